"""UDP super-packets of the TUN data plane (``tun_uso``): cutting one into the original
datagrams in Python, checked with scapy as an independent decoder."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from lispnet.dataplane.tun_gso import segment_l4


def _super(v6: bool, payloads: list[bytes]) -> bytes:
    """A UDP_L4 super-packet as GRO builds it: one header, lengths for the whole."""
    data = b"".join(payloads)
    if v6:
        pkt = IPv6(src="fd00:1::2", dst="fd00:2::2", hlim=63) / UDP(sport=40000, dport=7001) / data
    else:
        pkt = IP(src="10.1.0.2", dst="10.2.0.2", id=0xFFFE, ttl=63, flags="DF") / UDP(sport=40000, dport=7001) / data
    return bytes(pkt)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("sizes", [[18] * 5, [18] * 4 + [7], [1000, 1000, 999], [1]])
def test_segments_are_the_original_datagrams(v6: bool, sizes: list[int]) -> None:
    payloads = [bytes([k + 1]) * n for k, n in enumerate(sizes)]
    pieces = segment_l4(memoryview(_super(v6, payloads)), sizes[0])
    if len(sizes) == 1:
        assert len(pieces) == 1 and pieces[0][0] == b""  # nothing to cut: the packet itself
        return
    assert len(pieces) == len(sizes)
    for k, (hdr, payload) in enumerate(pieces):
        raw = hdr + bytes(payload)
        pkt = IPv6(raw) if v6 else IP(raw)
        udp = pkt[UDP]
        assert bytes(udp.payload) == payloads[k]
        assert udp.len == 8 + sizes[k] and (udp.sport, udp.dport) == (40000, 7001)
        # scapy recomputes the checksums from scratch: they must match what we wrote
        again = (IPv6 if v6 else IP)(bytes(pkt))
        del again[UDP].chksum
        if not v6:
            del again.chksum
        rebuilt = (IPv6 if v6 else IP)(bytes(again))
        assert rebuilt[UDP].chksum == udp.chksum != 0
        if v6:
            assert pkt.plen == 8 + sizes[k] and pkt.hlim == 63
        else:
            assert rebuilt.chksum == pkt.chksum
            assert pkt.len == 28 + sizes[k] and pkt.id == (0xFFFE + k) & 0xFFFF and pkt.ttl == 63
