"""Offload helpers of the TUN data plane: segmenting, coalescing, checksums, UDP GSO/GRO."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from lispnet.dataplane.encap import lisp_header, parse_lisp_header
from lispnet.dataplane.tun_gso import (
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    NO_VNET,
    coalesce,
    coalesce_batch,
    coalesce_batch_split,
    ipv4_header_checksum,
    ones_sum,
    segment_l4,
)
from lispnet.dataplane.udp_gso import GRO_CMSG_SPACE, enable_gro, gro_segment_size, send_batch

VNET = struct.Struct("<BBHHHH")


def ref_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@pytest.mark.parametrize("size", [0, 1, 2, 63, 64, 1448, 1449])
def test_ones_sum_matches_rfc1071(size: int) -> None:
    data = os.urandom(size)
    assert ones_sum(data) % 0xFFFF == ref_sum(data) % 0xFFFF


def valid_tcp(pkt: bytes) -> bool:
    p = IP(pkt) if pkt[0] >> 4 == 4 else IPv6(pkt)
    got = p[TCP].chksum
    del p[TCP].chksum
    if pkt[0] >> 4 == 4:
        del p[IP].chksum
        ok_ip = IP(bytes(p)).chksum == IP(pkt).chksum
    else:
        ok_ip = True
    return ok_ip and bool(IP(bytes(p))[TCP].chksum == got if pkt[0] >> 4 == 4 else IPv6(bytes(p))[TCP].chksum == got)


def super_packet(v6: bool, payload: bytes, flags: str = "PA") -> bytes:
    ip = IPv6(src="fd00:1::10", dst="fd00:2::10") if v6 else IP(src="10.1.0.10", dst="10.2.0.10", id=100, flags="DF")
    tcp = TCP(sport=40000, dport=5201, seq=1000, ack=77, flags=flags, options=[("NOP", None), ("NOP", None),
                                                                              ("Timestamp", (1, 2))])
    return bytes(ip / tcp / payload)


@pytest.mark.parametrize("v6", [False, True])
def test_segment_tcp_gives_valid_mss_packets(v6: bool) -> None:
    payload = os.urandom(10 * 1448 + 100)
    big = super_packet(v6, payload)
    segs = segment_l4(memoryview(big), 1448)
    assert len(segs) == 11
    data = b""
    for k, (hdr, pay) in enumerate(segs):
        pkt = bytes(hdr) + bytes(pay)
        assert valid_tcp(pkt)
        p = IP(pkt) if not v6 else IPv6(pkt)
        assert p[TCP].seq == 1000 + k * 1448
        assert ("P" in str(p[TCP].flags)) == (k == 10)
        if not v6:
            assert p[IP].id == 100 + k and p[IP].len == len(pkt)
        data += bytes(pay)
    assert data == payload


def spans_of(packets: list[bytes]) -> tuple[bytearray, list[tuple[int, int]]]:
    buf = bytearray()
    spans = []
    for pkt in packets:
        buf += lisp_header(1, 0, None)
        spans.append((len(buf), len(buf) + len(pkt)))
        buf += pkt
    return buf, spans


@pytest.mark.parametrize("v6", [False, True])
def test_coalesce_tcp_run_into_one_gso_write(v6: bool) -> None:
    payload = os.urandom(5 * 1448)
    segs = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(super_packet(v6, payload)), 1448)]
    buf, spans = spans_of(segs)
    out = coalesce(buf, memoryview(buf), spans)
    assert len(out) == 1
    iov = out[0]
    flags, gso_type, hdr_len, gso_size, csum_start, csum_off = VNET.unpack(bytes(iov[0]))
    ihl = 40 if v6 else 20
    assert (flags, gso_type, gso_size, csum_start, csum_off) == (1, GSO_TCPV6 if v6 else GSO_TCPV4, 1448, ihl, 16)
    merged = b"".join(bytes(x) for x in iov[1:])
    assert hdr_len == ihl + 32 and merged[hdr_len:] == payload
    p = IPv6(merged) if v6 else IP(merged)
    if not v6:
        assert p[IP].len == len(merged) and ipv4_header_checksum(merged[:10] + b"\0\0" + merged[12:20]) == p[IP].chksum
    assert "P" in str(p[TCP].flags) and p[TCP].seq == 1000
    # the checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL), the kernel adds the rest
    src, dst = (merged[8:24], merged[24:40]) if v6 else (merged[12:16], merged[16:20])
    assert p[TCP].chksum == ref_sum(src + dst + struct.pack("!HH", 6, len(merged) - ihl))


def test_coalesce_stops_at_gaps_and_other_flows() -> None:
    segs = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(super_packet(False, os.urandom(4 * 1000))), 1000)]
    other = bytes(IP(src="10.1.0.11", dst="10.2.0.10") / TCP(sport=1, dport=2, flags="A") / os.urandom(1000))
    packets = [segs[0], segs[1], segs[3], other, segs[2]]
    buf, spans = spans_of(packets)
    out = coalesce(buf, memoryview(buf), spans)
    # seg0+seg1 merge; seg3 (a gap), the other flow and seg2 stay single
    assert [len(x) for x in out] == [4, 2, 2, 2]
    assert all(bytes(x[0]) == NO_VNET for x in out[1:])


def test_coalesce_udp_same_size_datagrams() -> None:
    dgrams = [bytes(IP(src="10.1.0.10", dst="10.2.0.10", id=i) / UDP(sport=9, dport=5201) / (bytes([i]) * 64))
              for i in range(10)]
    dgrams.append(bytes(IP(src="10.1.0.10", dst="10.2.0.10") / UDP(sport=9, dport=5201) / (b"z" * 20)))
    buf, spans = spans_of(dgrams)
    out = coalesce(buf, memoryview(buf), spans)
    assert len(out) == 1
    _f, gso_type, hdr_len, gso_size, csum_start, csum_off = VNET.unpack(bytes(out[0][0]))
    assert (gso_type, hdr_len, gso_size, csum_start, csum_off) == (GSO_UDP_L4, 28, 64, 20, 6)
    merged = b"".join(bytes(x) for x in out[0][1:])
    assert IP(merged)[UDP].len == 8 + 10 * 64 + 20
    assert merged[28:] == b"".join(bytes([i]) * 64 for i in range(10)) + b"z" * 20


def test_udp_segment_batch_arrives_as_gro_batch() -> None:
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        if not enable_gro(rx):
            pytest.skip("no UDP_GRO")
        rx.bind(("::1", 0))
        inner = [bytes(IP(src="10.1.0.10", dst="10.2.0.10") / UDP(sport=9, dport=9) / bytes(64))] * 5
        hdr = lisp_header(0x1234, 100, 1)
        iov: list[bytes | bytearray | memoryview] = []
        for p in inner:
            iov += [hdr, p]
        assert send_batch(tx, rx.getsockname(), iov, 8 + len(inner[0]), 5) is None
        buf = bytearray(65536)
        n, anc, _fl, _addr = rx.recvmsg_into([buf], GRO_CMSG_SPACE)
        seg = gro_segment_size(anc) or n
        assert n == 5 * (8 + len(inner[0])) and seg == 8 + len(inner[0])
        for off in range(0, n, seg):
            assert parse_lisp_header(buf[off : off + 8]) == (100, 1, 0x1234, False)
            assert bytes(buf[off + 8 : off + seg]) == inner[0]
    finally:
        rx.close()
        tx.close()


@pytest.mark.parametrize("v6", [False, True])
def test_coalesce_batch_equals_packetwise_coalesce(v6: bool) -> None:
    segs = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(super_packet(v6, os.urandom(6 * 1000 + 300))), 1000)]
    buf, spans = spans_of(segs)
    stride = spans[1][0] - spans[0][0]
    whole = coalesce_batch(buf, memoryview(buf), spans[0][0], stride, len(segs), spans[-1][1])
    assert whole is not None
    assert [bytes(x) for x in whole] == [bytes(x) for x in coalesce(buf, memoryview(buf), spans)[0]]


def test_coalesce_batch_udp_and_refusals() -> None:
    dgrams = [bytes(IP(src="10.1.0.10", dst="10.2.0.10", id=i) / UDP(sport=9, dport=5201) / (bytes([i]) * 64))
              for i in range(8)]
    buf, spans = spans_of(dgrams)
    mv = memoryview(buf)
    stride = spans[1][0] - spans[0][0]
    iov = coalesce_batch(buf, mv, spans[0][0], stride, 8, spans[-1][1])
    assert iov is not None and [bytes(x) for x in iov] == [bytes(x) for x in coalesce(buf, mv, spans)[0]]
    # another flow in the middle, or a TCP gap: not one run
    mixed = list(dgrams)
    mixed[3] = bytes(IP(src="10.1.0.10", dst="10.2.0.10") / UDP(sport=10, dport=5201) / (b"x" * 64))
    buf2, spans2 = spans_of(mixed)
    assert coalesce_batch(buf2, memoryview(buf2), spans2[0][0], stride, 8, spans2[-1][1]) is None
    segs = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(super_packet(False, os.urandom(4 * 1000))), 1000)]
    buf3, spans3 = spans_of([segs[0], segs[2], segs[1], segs[3]])
    stride3 = spans3[1][0] - spans3[0][0]
    assert coalesce_batch(buf3, memoryview(buf3), spans3[0][0], stride3, 4, spans3[-1][1]) is None


def test_coalesce_batch_split_at_psh() -> None:
    # two sender writes back to back: PSH closes the first, the batch merges in two pieces
    a = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(super_packet(False, os.urandom(3 * 1000))), 1000)]
    second = IP(super_packet(False, os.urandom(3 * 1000)))
    second[TCP].seq = 1000 + 3000
    b = [bytes(h) + bytes(p) for h, p in segment_l4(memoryview(bytes(second)), 1000)]
    buf, spans = spans_of(a + b)
    stride = spans[1][0] - spans[0][0]
    assert coalesce_batch(buf, memoryview(buf), spans[0][0], stride, 6, spans[-1][1]) is None
    pieces = coalesce_batch_split(buf, memoryview(buf), spans[0][0], stride, 6, spans[-1][1])
    assert pieces is not None and len(pieces) == 2
    assert [[bytes(x) for x in p] for p in pieces] == [[bytes(x) for x in p] for p in coalesce(buf, memoryview(buf), spans)]
