"""Control messages: round trips (Hypothesis), flag bit positions, authentication, ECM
inner headers, and the decode checks (counts, auth length, trailing bytes, mask-len)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from strategies_control import STRATEGIES, any_control

from lispnet.wire import (
    AuthFailure,
    BadCount,
    BadLength,
    BadValue,
    DecodeError,
    Ecm,
    InfoReply,
    InfoRequest,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    ReferralRecord,
    RequestRecord,
    SharedExtension,
    TrailingBytes,
    Truncated,
    UnknownControl,
    UnknownType,
    build,
    compute_auth,
    parse_control,
    verify_raw,
)
from lispnet.wire.address import NO_ADDRESS
from lispnet.wire.auth import ms_rtr_auth_data, sign_raw, verify_ms_rtr_auth
from lispnet.wire.enums import AuthAlg, ReferralAction
from lispnet.wire.ip import internet_checksum, udp_checksum
from lispnet.wire.lcaf import LcafInstanceId, LcafNatTraversal
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

A = IPv4Address
RLOC = A("192.0.2.1")
REC = EidRecord(A("10.1.0.0"), 16, (LocatorRecord(A("203.0.113.1")),), authoritative=True)


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_roundtrip(name: str) -> None:
    @settings(max_examples=100, deadline=None)
    @given(STRATEGIES[name])
    def check(msg: Any) -> None:
        data = build(msg)
        back = parse_control(data)
        assert back == msg
        assert build(back) == data
        assert type(msg).from_bytes(data) == msg

    check()


@settings(max_examples=100, deadline=None)
@given(any_control)
def test_from_bytes_rejects_other_classes(msg: Any) -> None:
    data = build(msg)
    for cls in (MapRequest, MapRegister, Ecm, SharedExtension):
        if not isinstance(msg, cls):
            with pytest.raises(DecodeError):
                cls.from_bytes(data)


# --- header bits -------------------------------------------------------------------------


def first_word(msg: Any) -> int:
    return int.from_bytes(build(msg)[:4], "big")


@pytest.mark.parametrize(
    ("field", "mask"),
    [
        ("authoritative", 0x08000000),
        ("probe", 0x02000000),
        ("smr", 0x01000000),
        ("pitr", 0x00800000),
        ("smr_invoked", 0x00400000),
        ("mobile_node", 0x00200000),
        ("nat_xtr", 0x00008000),
        ("local_xtr", 0x00004000),
        ("dont_map_reply", 0x00002000),
    ],
)
def test_map_request_flags(field: str, mask: int) -> None:
    base = MapRequest(1, itr_rlocs=(RLOC,))
    assert first_word(base) == 0x10000000
    kw: dict[str, Any] = {field: True}
    assert first_word(dataclasses.replace(base, **kw)) == 0x10000000 | mask


def test_map_request_derived_bits() -> None:
    m = MapRequest(
        7,
        itr_rlocs=(RLOC, IPv6Address("2001:db8::1"), A("198.51.100.1")),
        records=(RequestRecord(A("10.0.0.1"), 32, notify=True),),
        map_reply_record=REC,
        xtr_id=5,
    )
    w = first_word(m)
    assert w & 0x04000000  # M
    assert w & 0x00100000  # I
    assert (w >> 8) & 0x1F == 2  # IRC = 3 - 1
    assert w & 0xFF == 1
    data = build(m)
    assert data[-16:] == (5).to_bytes(16, "big")  # xTR-ID only, no site-ID
    assert parse_control(data) == m
    # the N bit of the record is 0x80 in its reserved byte
    assert b"\x80\x20\x00\x01\x0a\x00\x00\x01" in data


def test_map_request_needs_an_itr_rloc() -> None:
    with pytest.raises(ValueError):
        build(MapRequest(1))
    with pytest.raises(ValueError):
        MapRequest(1, itr_rlocs=(RLOC,) * 33)


@pytest.mark.parametrize(
    ("field", "mask"),
    [
        ("proxy_reply", 0x08000000),
        ("lisp_sec", 0x04000000),
        ("eid_notify", 0x00001000),
        ("use_ttl", 0x00000800),
        ("merge", 0x00000400),
        ("mobile_node", 0x00000200),
        ("want_map_notify", 0x00000100),
    ],
)
def test_map_register_flags(field: str, mask: int) -> None:
    base = MapRegister(1, (REC,))
    assert first_word(base) == 0x30000001
    kw: dict[str, Any] = {field: True}
    assert first_word(dataclasses.replace(base, **kw)) == 0x30000001 | mask
    assert first_word(dataclasses.replace(base, xtr_id=1, site_id=2)) == 0x32000001


def test_map_reply_and_notify_flags() -> None:
    assert first_word(MapReply(1, probe=True)) == 0x28000000
    assert first_word(MapReply(1, echo_nonce_capable=True)) == 0x24000000
    assert first_word(MapReply(1, security=True, security_data=b"x")) == 0x22000000
    assert first_word(MapNotify(1, (), xtr_id=1)) == 0x48000000
    assert first_word(MapNotify(1, (), rtr_auth=True)) == 0x44000000
    assert first_word(MapNotifyAck(1, (REC,))) == 0x50000001
    assert first_word(InfoReply(1)) == 0x78000000
    assert first_word(InfoRequest(1)) == 0x70000000
    assert build(SharedExtension(0xABC, b"zz")) == b"\xfa\xbczz"


@pytest.mark.parametrize(
    ("field", "mask"),
    [
        ("security", 0x08000000),
        ("ddt", 0x04000000),
        ("to_etr", 0x02000000),
        ("to_ms", 0x01000000),
        ("rtr", 0x00400000),
        ("relayed", 0x00200000),
    ],
)
def test_ecm_flags(field: str, mask: int) -> None:
    inner = MapRequest(1, itr_rlocs=(RLOC,))
    base = Ecm(inner, A("10.0.0.1"), A("10.0.0.2"), 1000)
    extra: dict[str, Any] = {field: True}
    if field == "security":
        extra["auth_data"] = ms_rtr_auth_data(2, b"k", inner.to_bytes())
    assert first_word(base) == 0x80000000
    assert first_word(dataclasses.replace(base, **extra)) == 0x80000000 | mask


def test_reserved_bits_ignored_on_receive() -> None:
    data = bytearray(build(MapRequest(1, itr_rlocs=(RLOC,))))
    data[1] |= 0x0F  # bits 12..15 are reserved
    assert parse_control(bytes(data)) == MapRequest(1, itr_rlocs=(RLOC,))
    reply = bytearray(build(MapReply(9)))
    reply[1] |= 0xFF  # lispers.net hop count / reserved
    assert parse_control(bytes(reply)) == MapReply(9)


# --- Map-Referral ------------------------------------------------------------------------


def test_map_referral() -> None:
    rec = ReferralRecord.for_prefix(
        EidPrefix.parse("10.0.0.0/8", 1000),
        [LocatorRecord(A("192.0.2.9"))],
        ttl=15,
        action=ReferralAction.DELEGATION_HOLE,
        authoritative=True,
        incomplete=True,
    )
    msg = MapReferral(0xAB, (rec,))
    data = build(msg)
    assert data[:4] == b"\x60\x00\x00\x01"
    assert data[18:20] == bytes.fromhex("9800")  # ACT 4, A, I
    assert parse_control(data) == msg
    assert msg.records[0].prefix == EidPrefix.parse("10.0.0.0/8", 1000)


def test_map_referral_sigcnt_refused() -> None:
    data = bytearray(build(MapReferral(1, (ReferralRecord(A("10.0.0.0"), 8),))))
    data[20] |= 0x10  # SigCnt = 1
    with pytest.raises(UnknownType, match="SigCnt"):
        parse_control(bytes(data))


# --- Info ----------------------------------------------------------------------------------


def test_info_request_hostname_and_reply() -> None:
    req = InfoRequest(5, hostname="xtr-1")
    data = build(req)
    assert data.endswith(b"\x00\x11xtr-1\x00")
    assert parse_control(data) == req
    plain = InfoRequest(5)
    assert build(plain).endswith(b"\x00\x00\x00\x00\x00\x00")  # reserved, mask 0, AFI 0, AFI 0
    nat = LcafNatTraversal(4342, 61000, A("198.51.100.7"), A("192.0.2.10"), NO_ADDRESS, (A("192.0.2.20"),))
    rep = InfoReply(5, ttl=1440, nat=nat)
    data = build(rep)
    # ... TTL, reserved, mask-len 0, EID AFI 0, then AFI 16387 type 7 with ports 4342 / 61000
    assert data[16:24] == bytes.fromhex("000005a0 0000 0000")
    assert data[24:34] == bytes.fromhex("4003 0000 0700 0018 10f6")
    back = parse_control(data)
    assert back == rep and isinstance(back, InfoReply) and back.nat_traversal == nat
    assert InfoReply(5, nat=LcafInstanceId(3, A("10.0.0.1"))).nat_traversal is None


def test_info_request_bad_tail() -> None:
    data = build(InfoRequest(5))[:-2] + b"\x00\x01\x0a\x00\x00\x01"
    with pytest.raises(DecodeError):
        parse_control(data)


# --- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "full", "short"), [(AuthAlg.HMAC_SHA_1_96, 20, 12), (AuthAlg.HMAC_SHA_256_128, 32, 16)])
def test_sign_full_and_truncated(alg: AuthAlg, full: int, short: int) -> None:
    key = b"secret"
    reg = MapRegister(42, (REC,), key_id=3, alg_id=alg, want_map_notify=True, xtr_id=9, site_id=1)
    signed = reg.signed(key)
    assert len(signed.auth_data) == full
    assert signed.verify(key) and not signed.verify(b"other")
    data = build(signed)
    assert verify_raw(data, key) and not verify_raw(data, b"other")
    digest = hashlib.sha1 if alg == AuthAlg.HMAC_SHA_1_96 else hashlib.sha256
    zeroed = data[:16] + bytes(full) + data[16 + full :]
    assert signed.auth_data == hmac.new(key, zeroed, digest).digest()
    assert compute_auth(alg, key, zeroed) == signed.auth_data
    trunc = reg.signed(key, short)
    assert len(trunc.auth_data) == short
    assert trunc.verify(key) and verify_raw(build(trunc), key)
    assert not trunc.verify(b"other")
    assert sign_raw(build(dataclasses.replace(reg, auth_data=bytes(full))), key) == data
    with pytest.raises(ValueError):
        reg.signed(key, short - 1)


def test_verify_edge_cases() -> None:
    unsigned = MapNotify(1, (REC,))
    assert not unsigned.verify(b"k")
    assert not verify_raw(build(unsigned), b"k")
    assert not verify_raw(b"\x10" + bytes(40), b"k")  # a Map-Request carries no auth
    assert not verify_raw(b"\x30\x00", b"k")
    none = InfoRequest(1)
    assert not none.verify(b"k")
    with pytest.raises(ValueError):
        none.signed(b"k")  # algorithm NONE cannot sign
    info = InfoRequest(1, alg_id=AuthAlg.HMAC_SHA_1_96).signed(b"k")
    assert info.verify(b"k") and verify_raw(build(info), b"k")
    ack = MapNotifyAck(1, (REC,), alg_id=1).signed(b"k")
    assert verify_raw(build(ack), b"k")
    # a flipped bit anywhere breaks the HMAC
    data = bytearray(build(ack))
    data[-1] ^= 1
    assert not verify_raw(bytes(data), b"k")


def test_auth_length_checked_against_algorithm() -> None:
    with pytest.raises(ValueError):
        MapRegister(1, (), alg_id=AuthAlg.HMAC_SHA_1_96, auth_data=bytes(32))
    with pytest.raises(ValueError):
        MapRegister(1, (), alg_id=AuthAlg.NONE, auth_data=bytes(4))
    # unknown algorithms keep their bytes
    odd = MapRegister(1, (), alg_id=7, auth_data=b"abc")
    assert parse_control(build(odd)) == odd
    assert not odd.verify(b"k")


# --- ECM inner headers -------------------------------------------------------------------------


def test_ecm_ipv6_udp_checksum_computed() -> None:
    inner = MapRequest(3, itr_rlocs=(IPv6Address("2001:db8::1"),))
    e = Ecm(inner, IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"), 5555, inner_ttl=32, inner_flow_label=7)
    data = build(e)
    assert data[4] >> 4 == 6
    udp = data[44:]
    assert int.from_bytes(udp[6:8], "big") == udp_checksum(e.inner_src, e.inner_dst, udp)
    # the checksum including itself sums to zero over the pseudo-header
    pseudo = e.inner_src.packed + e.inner_dst.packed + len(udp).to_bytes(4, "big") + b"\x00\x00\x00\x11"
    assert internet_checksum(pseudo + udp) == 0
    assert parse_control(data) == e
    # a peer's different checksum is kept and re-encoded
    odd = bytearray(data)
    odd[50:52] = b"\x12\x34"
    back = parse_control(bytes(odd))
    assert isinstance(back, Ecm) and back.inner_udp_checksum == 0x1234
    assert build(back) == bytes(odd)


def test_ecm_ipv4_header_checksum_kept_when_wrong() -> None:
    e = Ecm(MapReply(1), A("10.0.0.1"), A("10.0.0.2"), 4342, inner_ttl=128, inner_ip_flags=2, inner_ip_id=9)
    data = bytearray(build(e))
    assert internet_checksum(bytes(data[4:24])) == 0
    data[14:16] = b"\xde\xad"
    back = parse_control(bytes(data))
    assert isinstance(back, Ecm) and back.inner_ip_checksum == 0xDEAD
    assert build(back) == bytes(data)
    # stating the correct checksum explicitly is the same value as leaving it None
    good = int.from_bytes(build(e)[14:16], "big")
    assert dataclasses.replace(e, inner_ip_checksum=good) == e


def test_ecm_ms_rtr_auth() -> None:
    notify = MapNotify(1, (REC,), alg_id=1, xtr_id=3, site_id=4, rtr_auth=True).signed(b"xtr-key")
    e = Ecm(notify, A("10.0.0.1"), A("10.0.0.2"), 4342, rtr=True).with_ms_rtr_auth(2, b"rtr-key")
    assert e.security and e.auth_data[0] == 2 and len(e.auth_data) == 8 + 32
    assert e.verify_ms_rtr_auth(b"rtr-key") and not e.verify_ms_rtr_auth(b"x")
    back = parse_control(build(e))
    assert back == e
    assert verify_ms_rtr_auth(e.auth_data, b"rtr-key", notify.to_bytes())
    assert isinstance(back, Ecm) and isinstance(back.message, MapNotify) and back.message.verify(b"xtr-key")


def test_ecm_validation() -> None:
    inner = MapRequest(1, itr_rlocs=(RLOC,))
    with pytest.raises(ValueError):
        Ecm(inner, A("10.0.0.1"), IPv6Address("::1"), 1)
    with pytest.raises(TypeError):
        Ecm(Ecm(inner, A("10.0.0.1"), A("10.0.0.2"), 1), A("10.0.0.1"), A("10.0.0.2"), 1)
    with pytest.raises(ValueError):
        Ecm(inner, A("10.0.0.1"), A("10.0.0.2"), 1, security=True)  # S without auth data
    with pytest.raises(ValueError):
        Ecm(inner, IPv6Address("::1"), IPv6Address("::2"), 1, inner_ip_id=3)


def test_ecm_lisp_sec_refused_cleanly() -> None:
    data = bytes.fromhex("88000000 01000000") + bytes(40)
    with pytest.raises(UnknownType):
        parse_control(data)


# --- decode checks -----------------------------------------------------------------------------


def test_decode_checks() -> None:
    good = build(MapRegister(1, (REC,), alg_id=2).signed(b"k"))
    with pytest.raises(Truncated):
        parse_control(good[:-1])
    with pytest.raises(TrailingBytes):
        parse_control(good + b"\x00")
    too_many = bytes([good[0], good[1], good[2], 200]) + good[4:]
    with pytest.raises(BadCount):
        parse_control(too_many)
    long_auth = good[:14] + b"\x10\x00" + good[16:]
    with pytest.raises(BadLength):
        parse_control(long_auth)
    odd_auth = good[:14] + b"\x00\x0f" + good[16:]  # 15 < 16, the shortest SHA-256 length
    with pytest.raises(AuthFailure):
        parse_control(odd_auth)
    req = bytearray(build(MapRequest(1, itr_rlocs=(RLOC,), records=(RequestRecord(A("10.0.0.0"), 8),))))
    req[-7] = 33  # mask-len 33 for an IPv4 EID
    with pytest.raises(BadValue):
        parse_control(bytes(req))
    with pytest.raises(Truncated):
        parse_control(b"")


def test_unknown_and_shared_extension() -> None:
    for t in (0, 9, 14):
        data = bytes([t << 4 | 3, 1, 2, 3])
        msg = parse_control(data)
        assert msg == UnknownControl(t, data)
        assert build(msg) == data
    with pytest.raises(ValueError):
        UnknownControl(1, b"\x10")
    ext = parse_control(b"\xf0\x01hello")
    assert ext == SharedExtension(1, b"hello")
    with pytest.raises(Truncated):
        parse_control(b"\xf0")


def test_request_record_prefix() -> None:
    p = EidPrefix.parse("10.1.0.0/16", 7)
    rr = RequestRecord.for_prefix(p, notify=True)
    assert rr.eid == LcafInstanceId(7, A("10.1.0.0")) and rr.prefix == p
    with pytest.raises(ValueError):
        RequestRecord(A("10.0.0.0"), 40)
    assert RequestRecord(NO_ADDRESS, 0).prefix.mask_len == 0


def test_lists_become_tuples() -> None:
    m = MapReply(1, [REC])  # type: ignore[arg-type]
    assert m == MapReply(1, (REC,)) and isinstance(m.records, tuple)


def test_build_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        build(REC)  # type: ignore[arg-type]


# --- ip.py and build() over data headers ---------------------------------------------------


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2 (ones' complement)
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2) & 0xFFFF
    assert internet_checksum(b"\x01") == (~0x0100) & 0xFFFF  # odd length pads with zero


def test_ip_udp_headers_roundtrip() -> None:
    from lispnet.wire.buffer import Reader
    from lispnet.wire.ip import Ipv4Header, Ipv6Header, UdpHeader, build_ip_udp, read_ip_header

    for hdr in (
        Ipv4Header(A("10.0.0.1"), A("10.0.0.2"), ttl=9, tos=0xB8, ident=77, flags=2, options=b"\x01\x01\x01\x00"),
        Ipv6Header(IPv6Address("::1"), IPv6Address("::2"), hop_limit=3, traffic_class=5, flow_label=0xABCDE),
    ):
        pkt = build_ip_udp(hdr, UdpHeader(1234, 4342), b"payload")
        r = Reader(pkt)
        back, plen = read_ip_header(r)
        assert back == hdr and plen == 15
        udp, ulen = UdpHeader.from_wire(r, hdr.src, hdr.dst)
        assert udp == UdpHeader(1234, 4342) and ulen == 7 and r.read_rest() == b"payload"


def test_build_accepts_data_headers() -> None:
    from lispnet.wire import LispHeader, parse_data_header

    h = LispHeader(nonce=0x123456, instance_id=1000)
    assert build(h) == bytes.fromhex("88123456 0003e800")  # V5
    assert parse_data_header(build(h)) == h
