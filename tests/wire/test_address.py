"""AFI-encoded addresses and EID prefixes (lispnet.wire.address / prefix / records)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from lispnet.wire.address import (
    NO_ADDRESS,
    Address,
    DistinguishedName,
    E164Address,
    LcafUnknown,
    MacAddress,
    parse_address,
    read_address,
    write_address,
)
from lispnet.wire.buffer import Reader, Writer
from lispnet.wire.enums import Afi
from lispnet.wire.errors import BadAfi, BadLcaf, BadValue, DecodeError, TrailingBytes, Truncated
from lispnet.wire.lcaf import LcafInstanceId
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

CASES: list[tuple[str, Address]] = [
    ("0000", NO_ADDRESS),
    ("0001 c0000201", IPv4Address("192.0.2.1")),
    ("0002 20010db8000000000000000000000001", IPv6Address("2001:db8::1")),
    ("4005 001122334455", MacAddress(bytes.fromhex("001122334455"))),
    ("0006 001122334455", MacAddress(bytes.fromhex("001122334455"), afi=Afi.MAC_LISPERS)),
    ("0008 12345678901234ff", E164Address(bytes.fromhex("12345678901234ff"))),
    ("0011 6c6973702e6e657400", DistinguishedName("lisp.net")),
    ("4003 0000 0200 000a 000003e8 0001 0a010000", LcafInstanceId(1000, IPv4Address("10.1.0.0"))),
    ("4003 0000 0220 000a 00000001 0001 0a010000", LcafInstanceId(1, IPv4Address("10.1.0.0"), 32)),
    ("4003 0107 c803 0003 aabbcc", LcafUnknown(200, b"\xaa\xbb\xcc", 1, 7, 3)),
]


@pytest.mark.parametrize("hexstr,value", CASES)
def test_address_both_ways(hexstr: str, value: Address) -> None:
    raw = bytes.fromhex(hexstr.replace(" ", ""))
    r = Reader(raw)
    assert read_address(r) == value
    r.expect_end()
    w = Writer()
    write_address(w, value)
    assert w.getvalue() == raw


@pytest.mark.parametrize(
    "hexstr,err",
    [
        ("", Truncated),
        ("00", Truncated),
        ("0001 c00002", Truncated),
        ("0063 00", BadAfi),
        ("0011 6c69", BadValue),  # distinguished name without NUL
        ("4003 0000 0200 0010 000003e8 0001 0a010000", BadLcaf),  # LCAF length beyond the data
        ("4003 0000 0200 000c 000003e8 0001 0a010000 0000", BadLcaf),  # unused bytes inside the body
        ("4003 0000 0200 0008 000003e8 0001 0a01", BadLcaf),  # nested address overruns the body
    ],
)
def test_bad_addresses(hexstr: str, err: type[DecodeError]) -> None:
    with pytest.raises(err):
        read_address(Reader(bytes.fromhex(hexstr.replace(" ", ""))))


def test_lcaf_depth_bomb_is_refused() -> None:
    body = bytes.fromhex("0001c0000201")
    for _ in range(40):
        body = (
            bytes.fromhex("4003 0000 0200".replace(" ", ""))
            + (4 + len(body)).to_bytes(2, "big")
            + (7).to_bytes(4, "big")
            + body
        )
    with pytest.raises(BadLcaf):
        read_address(Reader(body))


def test_reader_errors_carry_offset_and_type() -> None:
    r = Reader(b"\x00\x01\x02", msg_type=3)
    r.read_u16()
    with pytest.raises(Truncated) as ei:
        r.read_u16("field")
    assert ei.value.offset == 2 and ei.value.msg_type == 3
    r2 = Reader(b"\x00\x01")
    r2.read_u8()
    with pytest.raises(TrailingBytes):
        r2.expect_end()


def test_parse_address_text() -> None:
    assert parse_address("10.0.0.1") == IPv4Address("10.0.0.1")
    assert parse_address("2001:db8::1") == IPv6Address("2001:db8::1")
    assert parse_address("00:11:22:33:44:55") == MacAddress(bytes.fromhex("001122334455"))
    assert str(E164Address.from_digits("14085551234")) == "+14085551234"
    with pytest.raises(ValueError):
        parse_address("nonsense")


def test_eid_prefix_semantics() -> None:
    p = EidPrefix.parse("10.1.2.3/16", iid=7)
    assert p == EidPrefix(7, IPv4Address("10.1.0.0"), 16)
    assert str(p) == "[7]10.1.0.0/16"
    assert EidPrefix.parse("[7]10.1.0.0/16") == p
    assert p.contains(EidPrefix.parse("10.1.200.0/24", 7))
    assert not p.contains(EidPrefix.parse("10.1.200.0/24", 8))
    assert not p.contains(EidPrefix.parse("10.0.0.0/8", 7))
    assert p.overlaps(EidPrefix.parse("10.0.0.0/8", 7))
    assert p.to_wire_eid() == LcafInstanceId(7, IPv4Address("10.1.0.0"))
    assert EidPrefix.parse("10.0.0.0/8").to_wire_eid() == IPv4Address("10.0.0.0")
    # OOR (IID mask-len 32) and lispers.net (0) name the same prefix
    a = EidPrefix.from_wire_eid(LcafInstanceId(5, IPv4Address("10.0.0.0"), 32), 8)
    b = EidPrefix.from_wire_eid(LcafInstanceId(5, IPv4Address("10.0.0.0"), 0), 8)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(ValueError):
        EidPrefix(0, IPv4Address("10.0.0.0"), 33)
    mac = EidPrefix.parse("00:11:22:33:44:55/48", 3)
    assert mac.max_len == 48 and mac.contains(mac)
    v6 = EidPrefix.parse("2001:db8::/32")
    ordered = sorted([v6, p, EidPrefix.parse("9.0.0.0/8"), EidPrefix.parse("10.0.0.0/8")])
    assert ordered[0] == EidPrefix.parse("9.0.0.0/8") and ordered[-1] == p


def test_record_round_trip_and_prefix() -> None:
    rec = EidRecord.for_prefix(
        EidPrefix.parse("10.1.0.0/16", 1000),
        [LocatorRecord(IPv4Address("203.0.113.1"), 1, 50, local=True), LocatorRecord(IPv6Address("2001:db8::1"))],
        ttl=1440,
        authoritative=True,
    )
    w = Writer()
    rec.to_wire(w)
    back = EidRecord.from_wire(Reader(w.getvalue()))
    assert back == rec
    assert back.prefix == EidPrefix.parse("10.1.0.0/16", 1000)
    assert not back.is_negative
    with pytest.raises(ValueError):
        LocatorRecord(IPv4Address("1.2.3.4"), priority=256)
