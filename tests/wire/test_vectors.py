"""Golden vectors V1-V4 and V6 (shared/spec/README.md), both directions.

Each vector is a hex file under ``vectors/`` whose header comment names its source.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from lispnet.wire import (
    Ecm,
    MapNotify,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    build,
    parse_control,
    verify_raw,
)
from lispnet.wire.address import read_address, write_address
from lispnet.wire.buffer import Reader, Writer
from lispnet.wire.enums import Action, AuthAlg
from lispnet.wire.lcaf import LcafInstanceId
from lispnet.wire.records import EidRecord, LocatorRecord

VECTORS = Path(__file__).parent / "vectors"
KEY = b"lisp-test-key"


def load(name: str) -> bytes:
    """Read a vector: '#' lines are comments, an 'xxxx:' offset column is skipped."""
    out = bytearray()
    for line in (VECTORS / f"{name}.hex").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" in line:
            line = line.split(":", 1)[1]
        out += bytes.fromhex(line)
    return bytes(out)


V1 = MapRequest(
    nonce=0x0102030405060708,
    source_eid=IPv4Address("192.0.2.1"),
    itr_rlocs=(IPv4Address("198.51.100.1"),),
    records=(RequestRecord(IPv4Address("10.0.0.0"), 8),),
)

V1B = Ecm(message=V1, inner_src=IPv4Address("192.0.2.1"), inner_dst=IPv4Address("10.0.0.0"), inner_sport=61000)

V2_RECORD = EidRecord(
    eid=IPv4Address("10.1.0.0"),
    mask_len=16,
    locators=tuple(
        LocatorRecord(ip_address(a), priority=1, weight=50, m_priority=255, m_weight=0, local=True, reachable=True)
        for a in ("203.0.113.1", "203.0.113.2")
    ),
    ttl=1440,
    authoritative=True,
)

V2_SHA256 = MapRegister(
    nonce=0x1122334455667788,
    records=(V2_RECORD,),
    key_id=0,
    alg_id=AuthAlg.HMAC_SHA_256_128,
    auth_data=bytes.fromhex("35b6072f206a25a0eb38b33bee65c2bcdec7b08ce268013ea84d6660b9c4f365"),
    want_map_notify=True,
)
V2_SHA1 = MapRegister(
    nonce=0x1122334455667788,
    records=(V2_RECORD,),
    key_id=0,
    alg_id=AuthAlg.HMAC_SHA_1_96,
    auth_data=bytes.fromhex("78e79dedc21042a8522d69db99e8cce7f0dc4ce3"),
    want_map_notify=True,
)
V3 = MapNotify(
    nonce=0x1122334455667788,
    records=(V2_RECORD,),
    alg_id=AuthAlg.HMAC_SHA_256_128,
    auth_data=bytes.fromhex("ec113a436b5e3613c2c26efdab5be24fb10161298556ded192890a153a7484dc"),
)
V4 = MapReply(
    nonce=0x0102030405060708,
    records=(EidRecord(IPv4Address("10.0.0.0"), 8, (), ttl=15, action=Action.NATIVELY_FORWARD),),
)

CASES = [
    ("v1_map_request", V1),
    ("v1b_ecm_map_request", V1B),
    ("v2_map_register_sha256", V2_SHA256),
    ("v2_map_register_sha1", V2_SHA1),
    ("v3_map_notify", V3),
    ("v4_negative_map_reply", V4),
]


@pytest.mark.parametrize(("name", "value"), CASES, ids=[c[0] for c in CASES])
def test_parse_vector(name: str, value: object) -> None:
    assert parse_control(load(name)) == value


@pytest.mark.parametrize(("name", "value"), CASES, ids=[c[0] for c in CASES])
def test_build_vector(name: str, value: MapRequest) -> None:
    assert build(value) == load(name)
    assert value.to_bytes() == load(name)
    assert type(value).from_bytes(load(name)) == value


def test_v1b_inner_checksum() -> None:
    data = load("v1b_ecm_map_request")
    assert data[14:16] == b"\xae\xb0"
    ecm = parse_control(data)
    assert isinstance(ecm, Ecm)
    assert ecm.inner_ip_checksum is None and ecm.inner_udp_checksum is None
    assert ecm.inner_ttl == 64 and ecm.inner_dport == 4342


@pytest.mark.parametrize(
    ("name", "unsigned"),
    [
        ("v2_map_register_sha256", V2_SHA256),
        ("v2_map_register_sha1", V2_SHA1),
        ("v3_map_notify", V3),
    ],
)
def test_vector_auth(name: str, unsigned: MapRegister | MapNotify) -> None:
    data = load(name)
    msg = parse_control(data)
    assert isinstance(msg, MapRegister | MapNotify)
    assert msg.verify(KEY)
    assert verify_raw(data, KEY)
    assert not msg.verify(b"wrong-key")
    assert not verify_raw(data, b"wrong-key")
    # signing the unsigned message reproduces the vector's digest
    blank = dataclasses.replace(unsigned, auth_data=b"")
    assert not blank.verify(KEY)
    assert blank.signed(KEY) == msg
    assert build(blank.signed(KEY)) == data


def test_v2_hmac_input_matches_spec() -> None:
    """The spec prints the HMAC input: the message with its 32 auth bytes zeroed."""
    data = load("v2_map_register_sha256")
    zeroed = data[:16] + bytes(32) + data[48:]
    assert build(MapRegister(V2_SHA256.nonce, (V2_RECORD,), 0, 2, bytes(32), want_map_notify=True)) == zeroed


def test_v6_iid_lcaf_eid() -> None:
    data = load("v6_iid_lcaf_eid")
    r = Reader(data)
    addr = read_address(r)
    assert r.at_end()
    assert addr == LcafInstanceId(1000, IPv4Address("10.1.0.0"))
    w = Writer()
    write_address(w, LcafInstanceId(1000, IPv4Address("10.1.0.0")))
    assert w.getvalue() == data
    # and in a request record, the mask-len applies to the inner address
    req = MapRequest(1, itr_rlocs=(IPv4Address("192.0.2.1"),), records=(RequestRecord(addr, 16),))
    assert parse_control(build(req)) == req
    assert req.records[0].prefix.iid == 1000
