"""Data-plane headers (lispnet.wire.data): golden vectors, round trips, totality."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lispnet.wire.buffer import Reader, Writer
from lispnet.wire.data import (
    GpeNextProtocol,
    LispHeader,
    VxlanGbpHeader,
    VxlanGpeHeader,
    VxlanHeader,
    parse_data_header,
    parse_vxlan,
    split_data_packet,
)
from lispnet.wire.errors import BadValue, DecodeError, TrailingBytes, Truncated
from lispnet.wire.pcap import read_udp

# (hex, value, source)
LISP_CASES: list[tuple[str, LispHeader, str]] = [
    ("88123456 0003e800", LispHeader(nonce=0x123456, instance_id=1000), "spec README V5"),
    ("c8123456 0003e801", LispHeader(nonce=0x123456, lsb=1, instance_id=1000), "spec README V5 with L"),
    ("00000000 00000000", LispHeader(), "OOR data frames: all flags 0"),
    ("80abcdef 00000000", LispHeader(nonce=0xABCDEF), "N only"),
    ("a0abcdef 00000000", LispHeader(nonce=0xABCDEF, echo_nonce_request=True), "N+E"),
    ("40000000 80000003", LispHeader(lsb=0x80000003), "L with 32 LSBs"),
    ("10001002 00000000", LispHeader(map_version=(1, 2)), "V: source 1, dest 2"),
    ("10fff000 00000000", LispHeader(map_version=(0xFFF, 0)), "V: source 4095"),
    ("08000000 ffffff00", LispHeader(instance_id=0xFFFFFF), "I: IID 0xffffff"),
    ("5b00a00b 000064ff", LispHeader(lsb=0xFF, map_version=(0xA, 0xB), instance_id=100, key_id=3), "L V I KK=3"),
    ("81000001 00000000", LispHeader(nonce=1, key_id=1), "KK=1"),
]


@pytest.mark.parametrize(("hexstr", "value", "source"), LISP_CASES, ids=[c[2] for c in LISP_CASES])
def test_lisp_header_golden(hexstr: str, value: LispHeader, source: str) -> None:
    raw = bytes.fromhex(hexstr)
    assert parse_data_header(raw) == value
    assert LispHeader.from_bytes(raw) == value
    assert LispHeader.from_wire(Reader(raw)) == value
    assert value.to_bytes() == raw
    w = Writer()
    value.to_wire(w)
    assert w.getvalue() == raw


def test_v5_flags_and_inner_packet() -> None:
    pkt = bytes.fromhex("c81234560003e801") + b"\x45inner"
    hdr, inner = split_data_packet(pkt)
    assert hdr.flags == "NLI"
    assert hdr.nonce == 0x123456 and hdr.instance_id == 1000 and hdr.lsb == 1
    assert inner == b"\x45inner"
    assert LispHeader().flags == "-"


@pytest.mark.parametrize(
    ("hexstr", "value"),
    [
        # E without N is ignored by the ETR (RFC 9300 5.3)
        ("20abcdef 00000000", LispHeader()),
        # N and V both set: the field is read as a nonce
        ("90001002 00000000", LispHeader(nonce=0x001002)),
        # R/P bit, nonce field without N, LSBs without L: all ignored
        ("04123456 ffffffff", LispHeader()),
        # I=1 L=0: the LSB byte is ignored, the IID kept
        ("08000000 000001ff", LispHeader(instance_id=1)),
    ],
)
def test_lisp_header_receive_rules(hexstr: str, value: LispHeader) -> None:
    assert parse_data_header(bytes.fromhex(hexstr)) == value


def test_lisp_header_short_and_long() -> None:
    for n in range(8):
        with pytest.raises(Truncated):
            parse_data_header(bytes(n))
        with pytest.raises(Truncated):
            LispHeader.from_bytes(bytes(n))
        with pytest.raises(Truncated):
            LispHeader.from_wire(Reader(bytes(n)))
    with pytest.raises(TrailingBytes):
        LispHeader.from_bytes(bytes(9))
    assert parse_data_header(bytes(9)) == LispHeader()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce": 1 << 24},
        {"nonce": -1},
        {"nonce": 1, "map_version": (1, 1)},
        {"echo_nonce_request": True},
        {"echo_nonce_request": True, "map_version": (1, 1)},
        {"map_version": (4096, 0)},
        {"map_version": (0, -1)},
        {"instance_id": 1 << 24},
        {"instance_id": 5, "lsb": 256},
        {"lsb": 1 << 32},
        {"key_id": 4},
    ],
)
def test_lisp_header_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LispHeader(**kwargs)  # type: ignore[arg-type]


def test_lisp_header_types_checked() -> None:
    with pytest.raises(TypeError):
        LispHeader(nonce=True)
    with pytest.raises(TypeError):
        LispHeader(map_version=[1, 2])  # type: ignore[arg-type]


# --- VXLAN family ---------------------------------------------------------------------

VXLAN_CASES: list[tuple[str, str, object]] = [
    ("vxlan", "08000000 00006400", VxlanHeader(100)),
    ("vxlan", "08000000 ffffff00", VxlanHeader(0xFFFFFF)),
    ("auto", "08000000 00006400", VxlanHeader(100)),
    ("gbp", "88000123 00006400", VxlanGbpHeader(100, 0x123)),
    ("auto", "88480123 00006400", VxlanGbpHeader(100, 0x123, dont_learn=True, policy_applied=True)),
    ("gpe", "0c000003 00000a00", VxlanGpeHeader(10, GpeNextProtocol.ETHERNET)),
    ("gpe", "0f000001 00000a00", VxlanGpeHeader(10, 1, oam=True, bum=True)),
    ("gpe", "38000000 00000a00", VxlanGpeHeader(10, None, version=3)),
]


@pytest.mark.parametrize(("kind", "hexstr", "value"), VXLAN_CASES)
def test_vxlan_golden(kind: str, hexstr: str, value: VxlanHeader | VxlanGpeHeader | VxlanGbpHeader) -> None:
    raw = bytes.fromhex(hexstr)
    assert parse_vxlan(raw + b"frame", kind) == value  # type: ignore[arg-type]
    assert type(value).from_bytes(raw) == value
    assert type(value).from_wire(Reader(raw)) == value
    assert value.to_bytes() == raw
    w = Writer()
    value.to_wire(w)
    assert w.getvalue() == raw


def test_vxlan_gbp_bit_ignored_for_plain_vxlan() -> None:
    assert parse_vxlan(bytes.fromhex("88000123 00006400"), "vxlan") == VxlanHeader(100)


@pytest.mark.parametrize(
    ("kind", "hexstr"),
    [("vxlan", "00000000 00006400"), ("gpe", "04000003 00000a00"), ("gbp", "08000123 00006400"),
     ("gbp", "80000123 00006400"), ("auto", "80000123 00006400")],
)
def test_vxlan_bad_flags(kind: str, hexstr: str) -> None:
    with pytest.raises(BadValue):
        parse_vxlan(bytes.fromhex(hexstr), kind)  # type: ignore[arg-type]


def test_vxlan_invalid_values() -> None:
    with pytest.raises(ValueError):
        VxlanHeader(1 << 24)
    with pytest.raises(ValueError):
        VxlanGbpHeader(1, 1 << 16)
    with pytest.raises(ValueError):
        VxlanGpeHeader(1, 256)
    with pytest.raises(ValueError):
        VxlanGpeHeader(1, 3, version=4)
    with pytest.raises(ValueError):
        parse_vxlan(bytes(8), "nvgre")  # type: ignore[arg-type]
    with pytest.raises(Truncated):
        parse_vxlan(bytes(7))


# --- properties -----------------------------------------------------------------------

u24 = st.integers(0, 0xFFFFFF)
u12 = st.integers(0, 0xFFF)


@st.composite
def lisp_headers(draw: st.DrawFn) -> LispHeader:
    iid = draw(st.none() | u24)
    lsb = draw(st.none() | st.integers(0, 0xFF if iid is not None else 0xFFFFFFFF))
    which = draw(st.sampled_from(["none", "nonce", "version"]))
    nonce = draw(u24) if which == "nonce" else None
    mv = (draw(u12), draw(u12)) if which == "version" else None
    echo = draw(st.booleans()) if nonce is not None else False
    return LispHeader(nonce, lsb, echo, mv, iid, draw(st.integers(0, 3)))


@given(lisp_headers())
def test_lisp_roundtrip(h: LispHeader) -> None:
    raw = h.to_bytes()
    assert len(raw) == 8
    assert parse_data_header(raw) == h
    assert LispHeader.from_wire(Reader(raw)) == h


@given(st.binary(max_size=16))
def test_lisp_total(data: bytes) -> None:
    try:
        h = parse_data_header(data)
    except DecodeError:
        assert len(data) < 8
        return
    # a decoded header re-encodes to the same flags and fields (reserved bits aside)
    assert parse_data_header(h.to_bytes()) == h


vxlan_values = st.one_of(
    st.builds(VxlanHeader, u24),
    st.builds(VxlanGpeHeader, u24, st.none() | st.integers(0, 255), st.booleans(), st.booleans(), st.integers(0, 3)),
    st.builds(VxlanGbpHeader, u24, st.integers(0, 0xFFFF), st.booleans(), st.booleans()),
)


@given(vxlan_values)
def test_vxlan_roundtrip(h: VxlanHeader | VxlanGpeHeader | VxlanGbpHeader) -> None:
    kind = {VxlanHeader: "vxlan", VxlanGpeHeader: "gpe", VxlanGbpHeader: "gbp"}[type(h)]
    assert parse_vxlan(h.to_bytes(), kind) == h  # type: ignore[arg-type]
    assert type(h).from_bytes(h.to_bytes()) == h


@given(st.binary(max_size=12), st.sampled_from(["vxlan", "gpe", "gbp", "auto"]))
def test_vxlan_total(data: bytes, kind: str) -> None:
    try:
        parse_vxlan(data, kind)  # type: ignore[arg-type]
    except DecodeError:
        pass
    for cls in (VxlanHeader, VxlanGpeHeader, VxlanGbpHeader):
        try:
            cls.from_bytes(data)
        except DecodeError:
            pass
        try:
            cls.from_wire(Reader(data))
        except DecodeError:
            pass


# --- real captures --------------------------------------------------------------------

CAPTURES = Path(__file__).parent / "captures"


@pytest.mark.parametrize(
    ("capture", "count", "with_nonce"),
    [("oor-xtr-msmr.pcap", 7, False), ("lispersnet-xtr-msmr.pcap", 9, True)],
)
def test_capture_data_headers(capture: str, count: int, with_nonce: bool) -> None:
    """OOR sends all-zero flags; lispers.net sets N and a nonce, no I for IID 0 (interop README)."""
    frames = [d for d in read_udp(CAPTURES / capture) if d.dport == 4341]
    assert len(frames) == count
    for d in frames:
        h, inner = split_data_packet(d.payload)
        assert h.to_bytes() == d.payload[:8]
        assert (h.nonce is not None) == with_nonce
        assert h.instance_id is None and h.lsb is None and h.map_version is None
        assert inner[0] >> 4 == 4 and len(inner) == 84  # the inner ping
