"""Every LCAF type of RFC 8060 (lispnet.wire.lcaf, lcaf_geo, lcaf_te).

Golden vectors are hand-built from the layouts in /work/shared/spec/lcaf.md (RFC 8060,
RFC 8061, RFC 8389, draft-ietf-lisp-geo); each is checked both ways.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies_lcaf import LCAF_STRATEGIES, any_address, lcaf_values

from lispnet.wire import lcaf as lcaf_module
from lispnet.wire.address import (
    LCAF_REGISTRY,
    NO_ADDRESS,
    Address,
    DistinguishedName,
    Lcaf,
    LcafUnknown,
    read_address,
    write_address,
)
from lispnet.wire.buffer import Reader, Writer
from lispnet.wire.errors import BadAfi, BadLcaf, BadValue, DecodeError
from lispnet.wire.lcaf import (
    NO_ALTITUDE,
    ElpHop,
    LcafAfiList,
    LcafApplicationData,
    LcafAsNumber,
    LcafElp,
    LcafEncapFormat,
    LcafGeoCoordinates,
    LcafGeoPoint,
    LcafInstanceId,
    LcafJson,
    LcafKeyValue,
    LcafMulticastInfo,
    LcafNatTraversal,
    LcafNonceLocator,
    LcafNull,
    LcafOpaqueKey,
    LcafRle,
    LcafSecurityKey,
    LcafSourceDest,
    LcafVendor,
    RleEntry,
)

A1 = IPv4Address("10.0.0.1")
A2 = IPv4Address("10.0.0.2")


def _hex(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


def _encode(a: Address) -> bytes:
    w = Writer()
    write_address(w, a)
    return w.getvalue()


def _decode(raw: bytes) -> Address:
    r = Reader(raw)
    value = read_address(r)
    r.expect_end()
    return value


# (description, hex, value): the header is "4003 rsvd1 flags type rsvd2 length", then the body
GOLDEN: list[tuple[str, str, Address]] = [
    ("spec example: IID 1000, 10.1.0.0", "40 03 00 00 02 00 00 0a 00 00 03 e8 00 01 0a 01 00 00",
     LcafInstanceId(1000, IPv4Address("10.1.0.0"))),
    ("null body", "4003 0000 0000 0000", LcafNull()),
    ("AFI list IPv4 + IPv6", "4003 0000 0100 0018 0001 c0000201 0002 20010db8000000000000000000000001",
     LcafAfiList((IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")))),
    ("AFI list empty", "4003 0000 0100 0000", LcafAfiList(())),
    ("AS number", "4003 0000 0300 000a 0000fc00 0001 0a000001", LcafAsNumber(64512, A1)),
    ("application data", "4003 0000 0400 0012 0000b8 11 10f5 10f6 0400 ffff 0001 0a000001",
     LcafApplicationData(0xB8, 17, 4341, 4342, 1024, 65535, A1)),
    ("geo RFC 8060: 37-22-10-N 121-55-30-W, 30 m",
     "4003 0000 0500 0012 8025 16 0a 0079 37 1e 0000001e 0001 0a000001",
     LcafGeoCoordinates(True, 37, 22, 10, False, 121, 55, 30, 30, A1)),
    ("geo RFC 8060: no altitude, no address", "4003 0000 0500 000e 0000 00 00 80b4 00 00 7fffffff 0000",
     LcafGeoCoordinates(False, 0, 0, 0, True, 180, 0, 0, NO_ALTITUDE)),
    ("geo RFC 8060: below sea level", "4003 0000 0500 000e 801e 00 00 0010 00 00 ffffff9c 0000",
     LcafGeoCoordinates(True, 30, 0, 0, False, 16, 0, 0, -100)),
    ("geo draft: E, A, R, K flags, radius 5 km",
     "4003 0000 0500 0016 3600 0000 25 144b50 79 32cfd0 0000001e 0005 0000 0000",
     LcafGeoPoint(37, 1_330_000, 121, 3_330_000, e_bit=True, altitude=30, has_altitude=True, radius=5,
                  has_radius=True, radius_km=True)),
    ("geo draft: U, N, M flags, negative altitude, address",
     "4003 0000 0500 001a c800 0064 00 000000 b4 000000 fffffffb 0000 0000 0001 0a000001",
     LcafGeoPoint(0, 0, 180, 0, n_bit=True, altitude=-5, uncertainty=100, has_uncertainty=True, m_bit=True,
                  address=A1)),
    ("opaque key", "4003 0000 0600 0005 0102aabbcc", LcafOpaqueKey(_hex("0102aabbcc"))),
    ("NAT traversal",
     "4003 0000 0700 001c 10f6 ee48 0001 c6336407 0001 c000020a 0001 0a000002 0001 cb007101",
     LcafNatTraversal(4342, 61000, IPv4Address("198.51.100.7"), IPv4Address("192.0.2.10"), A2,
                      (IPv4Address("203.0.113.1"),))),
    ("NAT traversal, empty addresses, no RTRs", "4003 0000 0700 000a 10f6 10f5 0000 0000 0000",
     LcafNatTraversal(4342, 4341)),
    ("nonce locator", "4003 0000 0800 000a 00abcdef 0001 0a000001", LcafNonceLocator(0xABCDEF, A1)),
    ("multicast (S,G) join", "4003 0000 0901 0014 000003e8 0000 20 20 0001 0a000001 0001 e0010101",
     LcafMulticastInfo(1000, A1, 32, IPv4Address("224.1.1.1"), 32, join=True)),
    ("multicast (*,G) RP + leave", "4003 0000 0906 0010 000003e8 0000 00 20 0000 0001 ef010101",
     LcafMulticastInfo(1000, NO_ADDRESS, 0, IPv4Address("239.1.1.1"), 32, rp=True, leave=True)),
    ("ELP, flags first", "4003 0000 0a00 0010 0006 0001 0a000001 0001 0001 0a000002",
     LcafElp((ElpHop(A1, lookup=True, probe=True), ElpHop(A2, strict=True)))),
    ("security key", "4003 0000 0b00 0010 01 00 03 00 0004 deadbeef 0001 0a000001",
     LcafSecurityKey(1, 3, False, _hex("deadbeef"), A1)),
    ("security key, rekey, no key, no address", "4003 0000 0b00 0008 00 00 01 01 0000 0000",
     LcafSecurityKey(0, 1, True)),
    ("source/dest", "4003 0000 0c00 0010 0000 10 10 0001 0a010000 0001 0a020000",
     LcafSourceDest(IPv4Address("10.1.0.0"), 16, IPv4Address("10.2.0.0"), 16)),
    ("RLE, second entry with a name",
     "4003 0000 0d00 001b 000000 00 0001 0a000001 000000 01 0001 0a000002 0011 7274723100",
     LcafRle((RleEntry(A1, 0), RleEntry(A2, 1, "rtr1")))),
    ("JSON text + address", "4003 0000 0e00 000f 0007 7b2261223a317d 0001 0a000001",
     LcafJson(b'{"a":1}', False, A1)),
    ("JSON binary, no address", "4003 0000 0e01 0007 0003 010203 0000", LcafJson(b"\x01\x02\x03", True)),
    ("key/value", "4003 0000 0f00 000e 0011 636f6c6f7200 0001 0a000001",
     LcafKeyValue(DistinguishedName("color"), A1)),
    ("encapsulation format L + v", "4003 0000 1000 000a 00000009 0001 0a000001",
     LcafEncapFormat(lisp=True, vxlan_gpe=True, address=A1)),
    ("encapsulation format all", "4003 0000 1000 0006 0000007f 0000",
     LcafEncapFormat(True, True, True, True, True, True, True)),
    ("vendor specific", "4003 0000 ff00 0006 00 00000c 0102", LcafVendor(0x00000C, b"\x01\x02")),
    ("unknown type 200", "4003 0102 c803 0004 deadbeef", LcafUnknown(200, _hex("deadbeef"), 1, 2, 3)),
    ("unknown type 17, empty body", "4003 0000 1100 0000", LcafUnknown(17, b"")),
    ("nested: IID around source/dest",
     "4003 0000 0200 001c 00000005 4003 0000 0c00 0010 0000 1010 0001 0a010000 0001 0a020000",
     LcafInstanceId(5, LcafSourceDest(IPv4Address("10.1.0.0"), 16, IPv4Address("10.2.0.0"), 16))),
    ("nested: AFI list with an IID inside",
     "4003 0000 0100 0016 4003 0000 0200 000a 00000007 0001 0a000001 0011 7800",
     LcafAfiList((LcafInstanceId(7, A1), DistinguishedName("x")))),
    ("nested: ELP hop that is itself an AFI list",
     "4003 0000 0a00 0016 0004 4003 0000 0100 000c 0001 0a000001 0001 0a000002",
     LcafElp((ElpHop(LcafAfiList((A1, A2)), lookup=True),))),
]


@pytest.mark.parametrize("name,hexstr,value", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_both_ways(name: str, hexstr: str, value: Address) -> None:
    raw = _hex(hexstr)
    assert _decode(raw) == value
    assert _encode(value) == raw


def test_every_registered_type_has_a_golden_vector() -> None:
    covered = {type(v) for _, _, v in GOLDEN}
    registered = set(LCAF_REGISTRY.values())
    assert registered <= covered
    assert {LcafGeoPoint, LcafUnknown} <= covered
    assert sorted(LCAF_REGISTRY) == [*range(17), 255]


def test_exports() -> None:
    for name in lcaf_module.__all__:
        assert hasattr(lcaf_module, name)
    exported = {getattr(lcaf_module, n) for n in lcaf_module.__all__}
    assert set(LCAF_REGISTRY.values()) <= exported


def test_reserved_bits_are_ignored_on_receive() -> None:
    # nonce reserved byte, multicast/JSON unknown Rsvd2 bits, ELP/encap reserved bits set by a peer
    assert _decode(_hex("4003 ffff 08ff 000a ffabcdef 0001 0a000001")) == LcafNonceLocator(0xABCDEF, A1)
    assert _decode(_hex("4003 0000 09f9 000c 00000001 ffff 0000 0000 0000")) == LcafMulticastInfo(
        1, NO_ADDRESS, 0, NO_ADDRESS, 0, join=True
    )
    assert _decode(_hex("4003 0000 0efe 0004 0000 0000")) == LcafJson(b"")
    assert _decode(_hex("4003 0000 0a00 0004 fff8 0000")) == LcafElp((ElpHop(NO_ADDRESS),))
    assert _decode(_hex("4003 0000 1000 0006 ffffff80 0000")) == LcafEncapFormat()
    assert _decode(_hex("4003 0000 0b00 0008 01ff 02fe 0000 0000")) == LcafSecurityKey(1, 2)


def test_geo_layout_rule() -> None:
    # the same coordinates in both layouts decode to their own class
    rfc = LcafGeoCoordinates(True, 45, 30, 0, True, 7, 15, 0, 250)
    draft = LcafGeoPoint(45, 1_800_000, 7, 900_000, altitude=250, has_altitude=True)
    assert isinstance(_decode(_encode(rfc)), LcafGeoCoordinates)
    assert isinstance(_decode(_encode(draft)), LcafGeoPoint)
    assert _decode(_encode(rfc)) == rfc and _decode(_encode(draft)) == draft
    # a draft point whose bytes also read as RFC 8060 (altitude 0x0008xxxx: "AFI 8" at offset 12,
    # the E.164 body running to the end) cannot be built, and its bytes decode as RFC 8060
    ambiguous = _hex("4003 0000 0500 0016 0000 0000 00 000000 00 000000 00080000 0000 0000 0000")
    assert isinstance(_decode(ambiguous), LcafGeoCoordinates)
    with pytest.raises(ValueError, match="RFC 8060"):
        LcafGeoPoint(0, 0, 0, 0, altitude=0x00080000)
    # the same point with an address is not ambiguous
    assert _decode(_encode(LcafGeoPoint(0, 0, 0, 0, altitude=0x00080000, address=A1))) == LcafGeoPoint(
        0, 0, 0, 0, altitude=0x00080000, address=A1
    )


def test_geo_point_flag_byte() -> None:
    p = LcafGeoPoint(1, 2, 3, 4, has_uncertainty=True, n_bit=True, e_bit=True, has_altitude=True, m_bit=True,
                     has_radius=True, radius_km=True)
    assert p.flags == 0xFE
    assert _encode(p)[8] == 0xFE


MALFORMED: list[tuple[str, str, type[DecodeError]]] = [
    ("length beyond the data", "4003 0000 0300 0020 0000fc00 0001 0a000001", BadLcaf),
    ("trailing garbage in the body", "4003 0000 0300 000c 0000fc00 0001 0a000001 ffff", BadLcaf),
    ("truncated nested address", "4003 0000 0300 0008 0000fc00 0001 0a00", BadLcaf),
    ("truncated header", "4003 0000 03", DecodeError),
    ("null with a body", "4003 0000 0000 0001 00", BadLcaf),
    ("AFI list entry cut by the length", "4003 0000 0100 0004 0001 0a00 0000", BadLcaf),
    ("nested LCAF longer than its parent body",
     "4003 0000 0200 000c 00000005 4003 0000 0c00 0010 0000", BadLcaf),
    ("unknown nested AFI", "4003 0000 0300 0008 0000fc00 0063 0000", BadAfi),
    ("app data too short", "4003 0000 0400 0008 0000b811 10f510f6", BadLcaf),
    ("geo: neither layout (draft latitude 200)",
     "4003 0000 0500 0016 0000 0000 c8 000000 00 000000 00000000 0000 0000 0000", BadValue),
    ("geo: too short for either layout", "4003 0000 0500 0004 00000000", BadLcaf),
    ("geo draft: milliseconds out of range",
     "4003 0000 0500 0016 3600 0000 00 ffffff 00 000000 00000000 0000 0000 0000", BadValue),
    ("NAT: missing addresses", "4003 0000 0700 0006 10f6 10f5 0000", BadLcaf),
    ("nonce: no address", "4003 0000 0800 0004 00abcdef", BadLcaf),
    ("multicast: IPv4 mask 33", "4003 0000 0900 0014 00000000 0000 21 20 0001 0a000001 0001 e0010101", BadValue),
    ("ELP hop flags without an address", "4003 0000 0a00 0002 0001", BadLcaf),
    ("security key length beyond the body", "4003 0000 0b00 000a 01 00 01 00 0010 0000 0000", BadLcaf),
    ("source/dest: IPv4 mask 33", "4003 0000 0c00 0010 0000 21 10 0001 0a010000 0001 0a020000", BadValue),
    ("source/dest: one address only", "4003 0000 0c00 000a 0000 1010 0001 0a010000", BadLcaf),
    ("RLE entry truncated", "4003 0000 0d00 0006 000000 00 0001", BadLcaf),
    ("RLE name without NUL", "4003 0000 0d00 000c 000000 00 0000 0011 6162 6364", BadValue),
    ("JSON length beyond the body", "4003 0000 0e00 0004 0010 0000", BadLcaf),
    ("JSON without the address", "4003 0000 0e00 0004 0002 7b7d", BadLcaf),
    ("key/value: value missing", "4003 0000 0f00 0002 0000", BadLcaf),
    ("encap format: no address", "4003 0000 1000 0004 00000001", BadLcaf),
    ("vendor: OUI cut", "4003 0000 ff00 0002 0000", BadLcaf),
]


@pytest.mark.parametrize("name,hexstr,err", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(name: str, hexstr: str, err: type[DecodeError]) -> None:
    with pytest.raises(err):
        _decode(_hex(hexstr))


def test_depth_bomb_of_afi_lists() -> None:
    raw = _hex("0001 0a000001")
    for _ in range(200):
        raw = _hex("4003 0000 0100") + len(raw).to_bytes(2, "big") + raw
    with pytest.raises(BadLcaf, match="deep"):
        _decode(raw)


def test_depth_bomb_of_geo_bodies_is_fast() -> None:
    # type 5 tries two layouts at each level; the depth limit bounds the work
    raw = _hex("0000")
    for _ in range(30):
        body = _hex("0000 0000 0000 0000 0000 0000") + raw
        raw = _hex("4003 0000 0500") + len(body).to_bytes(2, "big") + body
    with pytest.raises(DecodeError):
        _decode(raw)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LcafAsNumber(1 << 32),
        lambda: LcafAsNumber(-1),
        lambda: LcafAsNumber(True),
        lambda: LcafAsNumber(1, "10.0.0.1"),  # type: ignore[arg-type]
        lambda: LcafAfiList([A1]),  # type: ignore[arg-type]
        lambda: LcafAfiList((A1, 5)),  # type: ignore[arg-type]
        lambda: LcafApplicationData(1 << 24, 0, 0, 0, 0, 0),
        lambda: LcafApplicationData(0, 256, 0, 0, 0, 0),
        lambda: LcafApplicationData(0, 0, 0, 0, 0, 65536),
        lambda: LcafGeoCoordinates(True, 91, 0, 0, True, 0, 0, 0),
        lambda: LcafGeoCoordinates(True, 0, 60, 0, True, 0, 0, 0),
        lambda: LcafGeoCoordinates(True, 0, 0, 0, True, 181, 0, 0),
        lambda: LcafGeoCoordinates(True, 0, 0, 0, True, 0, 0, 60),
        lambda: LcafGeoCoordinates(True, 0, 0, 0, True, 0, 0, 0, 1 << 31),
        lambda: LcafGeoCoordinates(1, 0, 0, 0, True, 0, 0, 0),  # type: ignore[arg-type]
        lambda: LcafGeoPoint(91, 0, 0, 0),
        lambda: LcafGeoPoint(0, 3_600_000, 0, 0),
        lambda: LcafGeoPoint(0, 0, 0, 0, uncertainty=1 << 16),
        lambda: LcafGeoPoint(0, 0, 0, 0, radius=-1),
        lambda: LcafOpaqueKey(bytes(0x10000)),
        lambda: LcafOpaqueKey("text"),  # type: ignore[arg-type]
        lambda: LcafNatTraversal(65536, 0),
        lambda: LcafNatTraversal(0, 0, rtr_rlocs=[A1]),  # type: ignore[arg-type]
        lambda: LcafNonceLocator(1 << 24),
        lambda: LcafMulticastInfo(1 << 32, A1, 32, A2, 32),
        lambda: LcafMulticastInfo(0, IPv6Address("::1"), 129, A2, 32),
        lambda: LcafMulticastInfo(0, A1, 32, A2, 32, join=1),  # type: ignore[arg-type]
        lambda: ElpHop(A1, strict=None),  # type: ignore[arg-type]
        lambda: LcafElp((A1,)),  # type: ignore[arg-type]
        lambda: LcafSecurityKey(256, 1),
        lambda: LcafSecurityKey(1, 256),
        lambda: LcafSourceDest(A1, 33, A2, 8),
        lambda: LcafSourceDest(A1, 8, A2, 256),
        lambda: RleEntry(A1, 256),
        lambda: RleEntry(A1, 0, "bad\x00name"),
        lambda: LcafRle((A1,)),  # type: ignore[arg-type]
        lambda: LcafJson("text"),  # type: ignore[arg-type]
        lambda: LcafEncapFormat(lisp=1),  # type: ignore[arg-type]
        lambda: LcafVendor(1 << 24),
        lambda: LcafVendor(0, bytes(0xFFFC)),
    ],
)
def test_constructors_refuse_invalid_values(make: object) -> None:
    assert callable(make)
    with pytest.raises((ValueError, TypeError)):
        make()


def test_values_are_hashable_and_printable() -> None:
    for _, _, value in GOLDEN:
        hash(value)
        assert str(value)
    assert str(LcafSourceDest(IPv4Address("10.1.0.0"), 16, IPv4Address("10.2.0.0"), 16)) == (
        "(10.1.0.0/16, 10.2.0.0/16)"
    )


# Hypothesis properties

_ROUND_TRIP_CLASSES = sorted(LCAF_STRATEGIES, key=lambda c: c.__name__)


def test_strategies_cover_every_class() -> None:
    assert set(LCAF_REGISTRY.values()) | {LcafGeoPoint, LcafUnknown} <= set(LCAF_STRATEGIES)


@pytest.mark.parametrize("cls", _ROUND_TRIP_CLASSES, ids=[c.__name__ for c in _ROUND_TRIP_CLASSES])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_per_class(cls: type[Lcaf], data: st.DataObject) -> None:
    value = data.draw(LCAF_STRATEGIES[cls])
    assert type(value) is cls
    raw = _encode(value)
    assert _decode(raw) == value
    assert _encode(_decode(raw)) == raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_address(3))
def test_round_trip_any_address(value: Address) -> None:
    raw = _encode(value)
    assert _decode(raw) == value


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_total_on_raw_bytes(body: bytes) -> None:
    try:
        read_address(Reader(b"\x40\x03" + body))
    except DecodeError:
        pass


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, 255), st.binary(min_size=3, max_size=3), st.binary(max_size=48), st.integers(-3, 3))
def test_total_on_well_framed_lcafs(ltype: int, rsvd: bytes, body: bytes, skew: int) -> None:
    # a consistent header (give or take a few bytes of Length) reaches every body decoder
    length = max(len(body) + skew, 0)
    raw = b"\x40\x03" + rsvd[:2] + bytes([ltype, rsvd[2]]) + length.to_bytes(2, "big") + body
    try:
        read_address(Reader(raw))
    except DecodeError:
        pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lcaf_values(2), st.data())
def test_total_on_mutated_encodings(value: Lcaf, data: st.DataObject) -> None:
    raw = bytearray(_encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        read_address(Reader(bytes(raw[:cut])))
    except DecodeError:
        pass
