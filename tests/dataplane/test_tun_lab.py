"""The TUN data plane under load in the demo lab (root only): the batched paths
(UDP_SEGMENT sends, UDP_GRO receives, GSO writes to the TUN) keep TCP byte-exact, and
the per-RLOC counters add up packet for packet."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from lispnet.lab import checks
from lispnet.lab.lab import Lab, down, ns_popen, up
from lispnet.lab.topology import load_topology

sys.path.insert(0, os.path.dirname(__file__))
from tcp_transfer import SINK, SOURCE  # noqa: E402

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

LAB = f"lnt-tun{os.getpid() % 10000}"

UDP_SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("10.2.0.10", 7001)); s.settimeout(3); print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048); n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""

UDP_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(i.to_bytes(4, "big") * 16, ("10.2.0.10", 7001))
"""


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    topo = load_topology("demo").with_name(LAB)
    request.addfinalizer(lambda: down(LAB))
    lab = up(topo, "tun", timeout=90)
    assert checks.ping(lab, "h1", "10.2.0.10", count=2)[1] >= 1
    yield lab


def test_tcp_transfer_is_byte_exact(lab: Lab) -> None:
    import subprocess

    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", SINK, "10.2.0.10"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        src = lab.exec("h1", [sys.executable, "-c", SOURCE, "10.2.0.10", str(30 * 1024 * 1024)], timeout=120)
        out, _ = sink.communicate(timeout=60)
    finally:
        if sink.poll() is None:
            sink.kill()
    assert src.stdout.split() == out.split()
    fwd = checks.forwarding(lab, "xtr2")
    # the receive side wrote super-packets: merged GRO batches, or whole tunnel super-packets
    assert fwd.get("gso.coalesced-writes", 0) + fwd.get("tnl.super-datagrams", 0) > 0


def _transfer(lab: Lab, size: int) -> None:
    import subprocess

    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", SINK, "10.2.0.10"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        src = lab.exec("h1", [sys.executable, "-c", SOURCE, "10.2.0.10", str(size)], timeout=120)
        out, _ = sink.communicate(timeout=60)
    finally:
        if sink.poll() is None:
            sink.kill()
    assert src.stdout.split() == out.split()


def _tcp_csum_errors(lab: Lab, node: str) -> int:
    lines = [ln.split() for ln in lab.exec(node, ["cat", "/proc/net/snmp"]).stdout.splitlines() if ln.startswith("Tcp:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["InCsumErrors"])


def _needs_tunnel_offload(lab: Lab) -> None:
    from lispnet.dataplane import netlink

    with netlink.open_ipr(lab.namespace("xtr1")) as ipr:
        present = netlink.link_index(ipr, "lispu") is not None
    if not present:
        pytest.skip("this kernel has no UDP-tunnel GSO on TAP devices (Linux 6.17+)")


def test_tcp_super_packets_cross_whole(lab: Lab) -> None:
    """TSO super-packets leave the ITR in one TAP write each and reach the ETR's socket whole
    (veth and bridge carry UDP-tunnel GSO); the per-RLOC counters count the segments."""
    _needs_tunnel_offload(lab)
    b1, b2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    csum = _tcp_csum_errors(lab, "h2")
    _transfer(lab, 20 * 1024 * 1024)
    a1, a2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    sent = a1["tnl.super-packets"] - b1.get("tnl.super-packets", 0)
    got = a2["tnl.super-datagrams"] - b2.get("tnl.super-datagrams", 0)
    assert sent > 0 and got == sent, (sent, got)
    encap = a1["encap.packets.fd00:255::12"] - b1["encap.packets.fd00:255::12"]
    decap = a2["decap.packets.fd00:255::11"] - b2["decap.packets.fd00:255::11"]
    assert encap >= 20 * 1024 * 1024 // 1500 and decap == encap, (encap, decap)
    assert _tcp_csum_errors(lab, "h2") == csum


def test_tcp_super_packets_are_cut_to_fit_a_smaller_underlay_mtu(lab: Lab) -> None:
    """With 1500 bytes toward the RLOC, a 1448-byte segment plus 108 bytes of headers does
    not fit: the ITR asks the kernel for smaller segments (the ITR counts more LISP packets
    than the ETR, which cuts again at its LAN MTU), nothing is dropped for size."""
    _needs_tunnel_offload(lab)
    from lispnet.dataplane import netlink

    def mtu(value: int) -> None:
        with netlink.open_ipr(lab.namespace("xtr1")) as ipr:
            netlink.link_up(ipr, "ul0", mtu=value)

    b1, b2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    csum = _tcp_csum_errors(lab, "h2")
    mtu(1500)
    try:
        _transfer(lab, 8 * 1024 * 1024)
    finally:
        mtu(1600)
    a1, a2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    sent = a1["tnl.super-packets"] - b1["tnl.super-packets"]
    assert sent > 0 and a2["tnl.super-datagrams"] - b2["tnl.super-datagrams"] == sent
    encap = a1["encap.packets.fd00:255::12"] - b1["encap.packets.fd00:255::12"]
    decap = a2["decap.packets.fd00:255::11"] - b2["decap.packets.fd00:255::11"]
    assert encap > decap > 0, (encap, decap)  # 1392-byte segments on the underlay, 1448 on h2's LAN
    assert _tcp_csum_errors(lab, "h2") == csum


FEATURES = """
import sys
from pyroute2.ethtool import Ethtool
e = Ethtool(); f = e.get_features("ul0")
for k in ("tx-checksum-ip-generic", "tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation"):
    f.features[k].enable = sys.argv[1] == "on"
e.set_features("ul0", f)
"""


def test_tcp_super_packets_cut_by_the_kernel_are_plain_lisp(lab: Lab) -> None:
    """Where a device cannot carry the super-packet (here: xTR1's underlay port, without
    UDP-tunnel segmentation and checksum offload, like a plain NIC), the kernel cuts it into
    ordinary LISP packets with complete inner checksums: the ETR sees no super-datagram, h2
    no checksum error, and the bytes arrive."""
    _needs_tunnel_offload(lab)
    b1, b2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    csum = _tcp_csum_errors(lab, "h2")
    assert lab.exec("xtr1", [sys.executable, "-c", FEATURES, "off"]).returncode == 0
    try:
        _transfer(lab, 8 * 1024 * 1024)
    finally:
        lab.exec("xtr1", [sys.executable, "-c", FEATURES, "on"])
    a1, a2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    assert a1["tnl.super-packets"] > b1.get("tnl.super-packets", 0)
    assert a2["tnl.super-datagrams"] == b2.get("tnl.super-datagrams", 0)
    assert _tcp_csum_errors(lab, "h2") == csum


def test_counters_add_up_under_a_burst(lab: Lab) -> None:
    import subprocess

    before1, before2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", UDP_SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        lab.exec("h1", [sys.executable, "-c", UDP_SOURCE, "20000"], timeout=60)
        received = int(sink.communicate(timeout=30)[0].split()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
    time.sleep(0.2)
    after1, after2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")

    def delta(a: dict[str, int], b: dict[str, int], k: str) -> int:
        return b.get(k, 0) - a.get(k, 0)

    encap = delta(before1, after1, "encap.packets.fd00:255::12")  # h1 -> h2 crosses over IPv6
    decap = delta(before2, after2, "decap.packets.fd00:255::11")
    assert received > 0
    # every packet the ITR counted reached the ETR, and every one the ETR counted reached h2
    assert encap == decap == received, (encap, decap, received)
    assert delta(before1, after1, "encap.bytes.fd00:255::12") == received * (20 + 8 + 64)
    sends = delta(before1, after1, "gso.udp-sends")
    assert 0 < sends <= encap  # batches: never more sendmsg calls than packets


@pytest.mark.parametrize("dst", ["10.2.0.10", "fd00:2::10"])
def test_udp_runs_cross_whole_and_datagram_exact(lab: Lab, dst: str) -> None:
    """The daemon's own LAN set-up (lan-gro) merges h1's bursts into UDP super-packets, IPv4
    and IPv6 EIDs alike; they cross whole (ITR count == ETR count) and every datagram
    arrives as sent."""
    import json
    import subprocess

    from udp_exact import UDP_SINK as EXACT_SINK
    from udp_exact import UDP_SOURCE as EXACT_SOURCE
    from udp_exact import with_receiver

    _needs_tunnel_offload(lab)
    checks.ping(lab, "h1", dst, count=2)
    b1, b2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    src, out = with_receiver(
        lambda: ns_popen(lab.namespace("h2"), [sys.executable, "-c", EXACT_SINK, dst], stdout=subprocess.PIPE,
                         text=True),
        lambda: lab.exec("h1", [sys.executable, "-c", EXACT_SOURCE, dst], timeout=120))
    a1, a2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    sent = int(src.stdout.split()[0])
    got = json.loads(out.strip().splitlines()[-1])
    assert got["bad"] == 0 and got["dup"] == 0 and got["ok"] >= 0.9 * sent, (got, sent)
    supers = a1["tnl.udp-super-packets"] - b1.get("tnl.udp-super-packets", 0)
    whole = a2["tnl.udp-super-datagrams"] - b2.get("tnl.udp-super-datagrams", 0)
    assert 0 < supers < sent // 4 and whole == supers, (supers, whole, sent)
