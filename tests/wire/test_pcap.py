"""Capture reading and writing (lispnet.wire.pcap)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lispnet.wire.errors import DecodeError
from lispnet.wire.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    BadCapture,
    BadFrame,
    CaptureError,
    Frame,
    TruncatedCapture,
    UdpDatagram,
    capture_kind,
    ip_udp_packet,
    iter_frames,
    pcap_bytes,
    read_udp,
    udp_of_frame,
    udp_of_ip,
    write_pcap,
)

CAPTURES = Path(__file__).parent / "captures"
OOR = CAPTURES / "oor-xtr-msmr.pcap"
LISPERS = CAPTURES / "lispersnet-xtr-msmr.pcap"

D4 = UdpDatagram(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 4342, 4342, b"\x10hello")
D6 = UdpDatagram(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"), 61000, 4341, b"\x80" * 9, ttl=7)


# --- capture writers used only by these tests -------------------------------------------


def raw_pcap(frames: list[bytes], linktype: int, big: bool = False, nano: bool = False) -> bytes:
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 100 + i, 500 if not nano else 500_000, len(f), len(f)) + f
    return out


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def raw_pcapng(frames: list[bytes], linktype: int, big: bool = False, tsresol: int | None = None) -> bytes:
    e = ">" if big else "<"
    out = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack(e + "HH", 0, 0)
    out += _block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts)
    out += _block(e, 4, b"\x00" * 8)  # a name-resolution block, skipped
    for i, f in enumerate(frames):
        ts = (i + 1) * 1000
        out += _block(e, 6, struct.pack(e + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + f)
    return out


def eth(ip: bytes, etype: int = 0x0800, vlans: int = 0) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, 10 + i) for i in range(vlans))
    return bytes(6) + bytes(6) + tags + etype.to_bytes(2, "big") + ip


def sll(ip: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), etype) + ip


def sll2(ip: bytes, etype: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, bytes(8)) + ip


def strip(d: UdpDatagram) -> tuple[object, ...]:
    return (d.src, d.dst, d.sport, d.dport, d.payload, d.ttl)


# --- the interop captures ---------------------------------------------------------------


def test_interop_captures() -> None:
    oor = read_udp(OOR)
    assert len(oor) == 17
    assert [d.frame for d in oor] == list(range(1, 18))
    assert oor[0].src == IPv4Address("10.0.0.11") and oor[0].dst == IPv4Address("10.0.0.1")
    assert (oor[0].sport, oor[0].dport) == (4342, 4342)
    assert oor[0].payload[:4] == bytes.fromhex("30000101")  # Map-Register, M bit, 1 record
    assert sum(1 for d in oor if d.dport == 4341) == 7
    lis = read_udp(LISPERS.read_bytes())
    assert len(lis) == 29
    assert lis[2].payload[0] >> 4 == 5  # the Map-Notify-Ack
    assert lis[10].payload[:4] == bytes.fromhex("809293fb")  # data header with N


def test_pcapng_from_editcap_matches_pcap() -> None:
    """oor-xtr-msmr.pcapng was produced by `editcap -F pcapng` from the pcap."""
    ng = CAPTURES / "oor-xtr-msmr.pcapng"
    assert capture_kind(ng.read_bytes()) == "pcapng"
    a = read_udp(OOR)
    b = read_udp(ng)
    assert [strip(d) for d in a] == [strip(d) for d in b]
    assert [d.timestamp for d in a] == pytest.approx([d.timestamp for d in b], abs=1e-6)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_timestamps_match_tshark() -> None:
    out = subprocess.run(
        ["tshark", "-r", str(OOR), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    theirs = [float(line.split("\t")[1]) for line in out if line.strip()]
    ours = [f.timestamp for f in iter_frames(OOR.read_bytes())]
    assert ours == pytest.approx(theirs, abs=1e-6)


# --- formats and link types ---------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders(big: bool, nano: bool) -> None:
    data = raw_pcap([eth(ip_udp_packet(D4))], LINKTYPE_ETHERNET, big, nano)
    assert capture_kind(data) == "pcap"
    frames = list(iter_frames(data))
    assert len(frames) == 1 and frames[0].timestamp == pytest.approx(100.0005)
    (d,) = read_udp(data)
    assert strip(d) == strip(D4)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize(("tsresol", "scale"), [(None, 1e-6), (9, 1e-9), (0x83, 1 / 8)])
def test_pcapng(big: bool, tsresol: int | None, scale: float) -> None:
    data = raw_pcapng([eth(ip_udp_packet(D4)), eth(ip_udp_packet(D6), 0x86DD)], LINKTYPE_ETHERNET, big, tsresol)
    assert capture_kind(data) == "pcapng"
    got = read_udp(data)
    assert [strip(d) for d in got] == [strip(D4), strip(D6)]
    assert [d.frame for d in got] == [1, 2]
    assert got[1].timestamp == pytest.approx(2000 * scale)


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (LINKTYPE_ETHERNET, lambda ip, et: eth(ip, et)),
        (LINKTYPE_ETHERNET, lambda ip, et: eth(ip, et, vlans=2)),
        (LINKTYPE_LINUX_SLL, sll),
        (LINKTYPE_LINUX_SLL2, sll2),
        (LINKTYPE_RAW, lambda ip, et: ip),
        (228, lambda ip, et: ip),
        (229, lambda ip, et: ip),
        (0, lambda ip, et: b"\x02\x00\x00\x00" + ip),
    ],
)
def test_link_types(linktype: int, wrap: Callable[[bytes, int], bytes]) -> None:
    frames = [wrap(ip_udp_packet(D4), 0x0800), wrap(ip_udp_packet(D6), 0x86DD)]
    got = read_udp(raw_pcap(frames, linktype))
    assert [strip(d) for d in got] == [strip(D4), strip(D6)]


def test_non_udp_and_non_ip_frames_are_skipped() -> None:
    arp = eth(bytes(28), 0x0806)
    icmp = bytearray(ip_udp_packet(D4))
    icmp[9] = 1
    data = raw_pcap([arp, eth(bytes(icmp)), eth(ip_udp_packet(D4))], LINKTYPE_ETHERNET)
    frames = list(iter_frames(data))
    assert udp_of_frame(frames[0]) is None
    assert udp_of_frame(frames[1]) is None
    (d,) = read_udp(data)
    assert d.frame == 3


def test_ethernet_padding_is_trimmed() -> None:
    frame = eth(ip_udp_packet(D4)) + b"\x00" * 20
    (d,) = read_udp(raw_pcap([frame], LINKTYPE_ETHERNET))
    assert d.payload == D4.payload


def test_ipv6_extension_headers() -> None:
    pkt = bytearray(ip_udp_packet(D6))
    udp = bytes(pkt[40:])
    # hop-by-hop (8 bytes, next = destination options) + destination options (8, next = UDP)
    ext = bytes([60, 0]) + bytes(6) + bytes([17, 0]) + bytes(6)
    hdr = bytearray(pkt[:40])
    hdr[6] = 0
    hdr[4:6] = (len(ext) + len(udp)).to_bytes(2, "big")
    d = udp_of_ip(bytes(hdr) + ext + udp)
    assert d is not None and strip(d) == strip(D6)
    # an atomic fragment header (offset 0, M 0) is fine, a real fragment is not
    frag_ok = bytes([17, 0, 0, 0, 0, 0, 0, 1])
    hdr[6] = 44
    hdr[4:6] = (8 + len(udp)).to_bytes(2, "big")
    assert udp_of_ip(bytes(hdr) + frag_ok + udp) is not None
    with pytest.raises(BadFrame, match="fragmented"):
        udp_of_ip(bytes(hdr) + bytes([17, 0, 0, 1, 0, 0, 0, 1]) + udp)


# --- writing ------------------------------------------------------------------------------


def _checksum_ok(data: bytes) -> bool:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


@pytest.mark.parametrize("d", [D4, D6])
def test_written_checksums(d: UdpDatagram) -> None:
    pkt = ip_udp_packet(d)
    ulen = 8 + len(d.payload)
    if d.src.version == 4:
        assert _checksum_ok(pkt[:20])
        pseudo = d.src.packed + d.dst.packed + struct.pack("!BBH", 0, 17, ulen)
        udp = pkt[20:]
    else:
        pseudo = d.src.packed + d.dst.packed + struct.pack("!I3xB", ulen, 17)
        udp = pkt[40:]
    assert udp[6:8] != b"\0\0"
    assert _checksum_ok(pseudo + udp)


def test_write_read_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    write_pcap(out, [D4, D6])
    assert [strip(d) for d in read_udp(out)] == [strip(D4), strip(D6)]
    with (tmp_path / "y.pcap").open("wb") as fh:
        write_pcap(fh, [D6], LINKTYPE_RAW)
    assert [strip(d) for d in read_udp(tmp_path / "y.pcap")] == [strip(D6)]
    with pytest.raises(ValueError):
        pcap_bytes([D4], LINKTYPE_LINUX_SLL)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_written_capture_is_clean_for_tshark(tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    write_pcap(out, [D4, D6])
    res = subprocess.run(
        ["tshark", "-r", str(out), "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-T", "fields", "-e", "udp.checksum.status", "-e", "ip.checksum.status", "-e", "udp.dstport"],
        capture_output=True, text=True, check=True,
    )
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    # tshark's checksum status: 0 = Bad, 1 = Good, 2 = Unverified
    assert rows[0] == ["1", "1", "4342"]
    assert rows[1][0] == "1" and rows[1][2] == "4341"
    # and the same check does see a broken UDP checksum
    data = bytearray(out.read_bytes())
    data[24 + 16 + 14 + 20 + 6] ^= 0xFF
    out.write_bytes(bytes(data))
    res = subprocess.run(
        ["tshark", "-r", str(out), "-c", "1", "-o", "udp.check_checksum:TRUE", "-T", "fields",
         "-e", "udp.checksum.status"],
        capture_output=True, text=True, check=True,
    )
    assert res.stdout.strip() == "0"


def test_datagram_validation() -> None:
    with pytest.raises(TypeError):
        UdpDatagram(IPv4Address("1.1.1.1"), IPv6Address("::1"), 1, 1, b"")
    with pytest.raises(ValueError):
        UdpDatagram(ip_address("1.1.1.1"), ip_address("1.1.1.2"), 70000, 1, b"")


# --- bad input ------------------------------------------------------------------------------


def test_not_a_capture() -> None:
    assert capture_kind(b"\x10\x00") is None
    with pytest.raises(BadCapture, match="not a pcap"):
        list(iter_frames(b"hello world, not a capture"))
    with pytest.raises(BadCapture):
        list(iter_frames(b""))


def test_truncated_pcap_yields_frames_before_the_cut() -> None:
    data = OOR.read_bytes()
    cut = data[:-10]
    got: list[Frame] = []
    with pytest.raises(TruncatedCapture) as ei:
        for f in iter_frames(cut):
            got.append(f)
    assert len(got) == 16
    assert ei.value.offset is not None and ei.value.offset > 0
    with pytest.raises(TruncatedCapture):
        list(iter_frames(data[:20]))


def test_bad_pcap_headers() -> None:
    good = raw_pcap([eth(ip_udp_packet(D4))], LINKTYPE_ETHERNET)
    with pytest.raises(BadCapture, match="version"):
        list(iter_frames(good[:4] + b"\x09\x00" + good[6:]))
    with pytest.raises(BadCapture, match="link type"):
        list(iter_frames(raw_pcap([b""], 147)))


def test_bad_pcapng_blocks() -> None:
    good = raw_pcapng([eth(ip_udp_packet(D4))], LINKTYPE_ETHERNET)
    bad_len = bytearray(good)
    bad_len[4:8] = (13).to_bytes(4, "little")
    with pytest.raises(BadCapture, match="block length"):
        list(iter_frames(bytes(bad_len)))
    bad_bom = bytearray(good)
    bad_bom[8:12] = b"xxxx"
    with pytest.raises(BadCapture, match="byte-order"):
        list(iter_frames(bytes(bad_bom)))
    with pytest.raises(TruncatedCapture):
        list(iter_frames(good[:-3]))
    # a packet block before any interface description
    e = "<"
    shb = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    epb = _block(e, 6, struct.pack(e + "IIIII", 0, 0, 0, 4, 4) + b"abcd")
    with pytest.raises(BadCapture, match="interface"):
        list(iter_frames(shb + epb))
    # captured length running past the block
    epb_bad = _block(e, 1, struct.pack(e + "HHI", 1, 0, 0)) + _block(
        e, 6, struct.pack(e + "IIIII", 0, 0, 0, 400, 400) + b"abcd"
    )
    with pytest.raises(BadCapture, match="runs past"):
        list(iter_frames(shb + epb_bad))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p[:10], "IPv4 header"),
        (lambda p: p[:2] + b"\xff\xff" + p[4:], "total length"),
        (lambda p: b"\x44" + p[1:], "header length"),
        (lambda p: p[:24] + b"\x00\x03" + p[26:], "UDP length"),
        (lambda p: p[:24] + b"\x01\x00" + p[26:], "UDP length"),
        (lambda p: p[:6] + b"\x20\x00" + p[8:], "fragmented"),
        (lambda p: b"\x75" + p[1:], "IP version"),
    ],
)
def test_bad_frames(mutate: Callable[[bytes], bytes], match: str) -> None:
    pkt = mutate(ip_udp_packet(D4))
    frame = Frame(7, 0.0, LINKTYPE_ETHERNET, eth(pkt), 0)
    with pytest.raises(BadFrame, match=match) as ei:
        udp_of_frame(frame)
    assert ei.value.number == 7
    assert isinstance(ei.value, CaptureError) and isinstance(ei.value, DecodeError)


def test_short_link_headers() -> None:
    for lt, n in ((LINKTYPE_ETHERNET, 13), (LINKTYPE_LINUX_SLL, 15), (LINKTYPE_LINUX_SLL2, 19), (0, 3)):
        with pytest.raises(BadFrame):
            udp_of_frame(Frame(1, 0.0, lt, bytes(n), n))


@given(st.binary(max_size=200))
def test_capture_reader_total(data: bytes) -> None:
    for blob in (data, raw_pcap([data], LINKTYPE_ETHERNET)[: 24 + 16 + len(data)], b"\x0a\x0d\x0d\x0a" + data):
        try:
            for f in iter_frames(blob):
                try:
                    udp_of_frame(f)
                except BadFrame:
                    pass
        except CaptureError:
            pass


@given(st.binary(max_size=120), st.sampled_from([LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, 101, 0]))
def test_frame_decoder_total(data: bytes, linktype: int) -> None:
    for frame in (data, eth(data), eth(data, 0x86DD)):
        try:
            udp_of_frame(Frame(1, 0.0, linktype, frame, len(frame)))
        except BadFrame:
            pass
