"""The TUN backend with and without tunnel offload, two xTRs back to back (root only):
h1 - x1 = x2 - h2, one TunDataplane process per xTR.  TCP stays byte-exact both ways;
with the offload the ITR writes super-packets whole and the ETR receives them whole,
without it the kernel cuts TCP before the TUN and the ETR merges GRO batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from lispnet.dataplane import netlink
from lispnet.lab.lab import ns_popen, ns_run, ns_sysctls

sys.path.insert(0, os.path.dirname(__file__))
from tcp_transfer import SINK, SOURCE  # noqa: E402
from udp_exact import MARKED_RECV, MARKED_SEND, UDP_SINK, UDP_SOURCE, with_receiver  # noqa: E402

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

PREFIX = f"lnv-m{os.getpid() % 10000}"
NODES = ("h1", "x1", "x2", "h2")

XTR = textwrap.dedent(
    """
    import json, sys, time
    from ipaddress import ip_address as A
    from lispnet.dataplane.tun import TunDataplane
    from lispnet.dataplane.base import FwdEntry, FwdLocator
    from lispnet.wire.prefix import EidPrefix
    me, peer, remote, offload = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "on"
    dp = TunDataplane(tunnel_offload=None if offload else False)
    dp.set_instances({0: "lan0"})
    dp.set_local_rlocs([A(me)], 1)
    dp.start(lambda m: None)
    dp.install(FwdEntry(EidPrefix.parse(remote, 0), (FwdLocator(A(peer)),)))
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(dp.stats()), flush=True)
    dp.stop()
    """
)

def ns(node: str) -> str:
    return f"{PREFIX}-{node}"


@pytest.fixture(scope="module")
def topo() -> Iterator[None]:
    try:
        for node in NODES:
            netlink.create_namespace(ns(node))
            with netlink.open_ipr(ns(node)) as ipr:
                netlink.link_up(ipr, "lo")
        for x in ("x1", "x2"):
            ns_sysctls(ns(x), {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1,
                               "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0})
        links = (("h1", "eth0", "x1", "lan0"), ("x1", "ul0", "x2", "ul0"), ("h2", "eth0", "x2", "lan0"))
        for a, ia, b, ib in links:
            with netlink.open_ipr(ns(a)) as ipr:
                netlink.create_veth(ipr, ia, ib, peer_netns=ns(b))
        addrs = {("h1", "eth0"): "10.1.0.2/24", ("x1", "lan0"): "10.1.0.1/24", ("x1", "ul0"): "192.168.0.1/24",
                 ("x2", "ul0"): "192.168.0.2/24", ("x2", "lan0"): "10.2.0.1/24", ("h2", "eth0"): "10.2.0.2/24"}
        for (node, dev), cidr in addrs.items():
            with netlink.open_ipr(ns(node)) as ipr:
                netlink.add_address(ipr, dev, cidr)
                netlink.link_up(ipr, dev, mtu=1600 if dev == "ul0" else None)
        for host, gw in (("h1", "10.1.0.1"), ("h2", "10.2.0.1")):
            with netlink.open_ipr(ns(host)) as ipr:
                netlink.replace_route(ipr, "default", gateway=gw)
        yield
    finally:
        for node in NODES:
            if ns(node) in netlink.list_namespaces():
                netlink.remove_namespace(ns(node))


def run_xtrs(offload: str) -> list[subprocess.Popen[str]]:
    procs = []
    for x, me, peer, remote in (("x1", "192.168.0.1", "192.168.0.2", "10.2.0.0/24"),
                                ("x2", "192.168.0.2", "192.168.0.1", "10.1.0.0/24")):
        p = ns_popen(ns(x), [sys.executable, "-c", XTR, me, peer, remote, offload], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
    return procs


def stop_xtrs(procs: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    stats = []
    for p in procs:
        out, _ = p.communicate(input="\n", timeout=30)
        stats.append(json.loads(out.strip().splitlines()[-1]))
    return stats


def transfer(size: int) -> None:
    sink = ns_popen(ns("h2"), [sys.executable, "-c", SINK, "10.2.0.2"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        src = ns_run(ns("h1"), [sys.executable, "-c", SOURCE, "10.2.0.2", str(size)], timeout=120)
        out, _ = sink.communicate(timeout=60)
    finally:
        if sink.poll() is None:
            sink.kill()
    assert src.stdout.split() == out.split() and src.stdout.split()[0] == str(size)


def has_device(node: str, name: str) -> bool:
    with netlink.open_ipr(ns(node)) as ipr:
        return netlink.link_index(ipr, name) is not None


@pytest.mark.parametrize("offload", ["on", "off"])
def test_tcp_byte_exact_with_and_without_tunnel_offload(topo: None, offload: str) -> None:
    procs = run_xtrs(offload)
    try:
        tap = has_device("x1", "lispu") and has_device("x1", "lisp0t")
        transfer(16 * 1024 * 1024)
    finally:
        s1, s2 = stop_xtrs(procs)
    if offload == "off":
        assert not tap  # neither the TAP nor the TCP TUN
        assert s1["tnl.super-packets"] == 0 and s2["tnl.super-datagrams"] == 0
        assert s2["gso.coalesced-writes"] > 0  # GRO batches merged into GSO writes
    else:
        if not tap:
            pytest.skip("this kernel has no UDP-tunnel GSO on TAP devices (Linux 6.17+)")
        assert s1["tnl.super-packets"] > 0 and s2["tnl.super-datagrams"] == s1["tnl.super-packets"]
    assert s1["encap.packets.192.168.0.2"] == s2["decap.packets.192.168.0.1"] > 16 * 1024 * 1024 // 1500
    assert not [k for k in (*s1, *s2) if k.startswith("drop.")], (s1, s2)


@pytest.mark.parametrize("offload", ["on", "off"])
def test_udp_datagrams_exact_with_and_without_udp_super_packets(topo: None, offload: str) -> None:
    """With the offload the LAN's UDP reaches the ITR in GRO-merged runs that cross whole
    (tun_uso); every datagram arrives as sent (size, content), none merged or cut."""
    procs = run_xtrs(offload)
    try:
        tap = has_device("x1", "lispu")
        src, out = with_receiver(
            lambda: ns_popen(ns("h2"), [sys.executable, "-c", UDP_SINK, "10.2.0.2"], stdout=subprocess.PIPE,
                             text=True),
            lambda: ns_run(ns("h1"), [sys.executable, "-c", UDP_SOURCE, "10.2.0.2"], timeout=120))
    finally:
        s1, s2 = stop_xtrs(procs)
    sent = int(src.stdout.split()[0])
    got = json.loads(out.strip().splitlines()[-1])
    assert got["bad"] == 0 and got["dup"] == 0
    assert got["ok"] >= 0.9 * sent, (got, sent)
    assert s1["encap.packets.192.168.0.2"] == s2["decap.packets.192.168.0.1"] >= got["ok"]
    if offload == "off":
        assert s1["tnl.udp-super-packets"] == 0
    else:
        if not tap:
            pytest.skip("this kernel has no UDP-tunnel GSO on TAP devices (Linux 6.17+)")
        # runs crossed whole: far fewer super-packets than datagrams, all received whole
        assert 0 < s1["tnl.udp-super-packets"] < sent // 4
        assert s2["tnl.udp-super-datagrams"] == s1["tnl.udp-super-packets"]
    assert not [k for k in (*s1, *s2) if k.startswith("drop.")], (s1, s2)


LAN_STATE = """
import json
from lispnet.dataplane.lan_gro import lan_state
print(json.dumps(lan_state("lan0")))
"""


def test_udp_offload_sets_up_the_lan_and_restores_it(topo: None) -> None:
    def state() -> dict[str, int]:
        res = ns_run(ns("x1"), [sys.executable, "-c", LAN_STATE], check=True)
        return dict(json.loads(res.stdout))

    before = state()
    procs = run_xtrs("on")
    try:
        during = state()
        tap = has_device("x1", "lispu")
    finally:
        stop_xtrs(procs)
    after = state()
    if not tap:
        pytest.skip("this kernel has no UDP-tunnel GSO on TAP devices (Linux 6.17+)")
    assert during == {"rx-gro": True, "rx-udp-gro-forwarding": True, "gro_flush_timeout": 20000,
                      "napi_defer_hard_irqs": 2}
    assert after == before and before["rx-udp-gro-forwarding"] is False


OUTER_SNIFF = """
import json, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))  # ETH_P_ALL: outgoing too
s.bind(("ul0", 0)); s.settimeout(10); print("ready", flush=True)
while True:
    p = s.recv(4096)
    if len(p) > 45 and p[0] == 0x45 and p[9] == 17 and p[22:24] == (4341).to_bytes(2, "big") and p[20 + 16 + 9] == 17:
        inner = p[36:]
        print(json.dumps({"ttl": p[8], "tos": p[1], "inner_ttl": inner[8], "inner_tos": inner[1]}), flush=True)
        break
"""

@pytest.mark.parametrize("offload", ["on", "off"])
def test_itr_copies_inner_ttl_and_tos_to_the_outer_header(topo: None, offload: str) -> None:
    """Through the tunnel-offload TAP (a UDP super-packet) and through the UDP sockets."""
    procs = run_xtrs(offload)
    try:
        _, out = with_receiver(
            lambda: ns_popen(ns("x1"), [sys.executable, "-c", OUTER_SNIFF], stdout=subprocess.PIPE, text=True),
            lambda: ns_run(ns("h1"), [sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
                                      "socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 30);"
                                      "s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xBA);"
                                      "[s.sendto(b'ttl', ('10.2.0.2', 7003)) for _ in range(3)]"], check=True),
            timeout=20)
    finally:
        stop_xtrs(procs)
    seen = json.loads(out.strip().splitlines()[-1])
    # x1 forwarded the packet (TTL 30 -> 29) into its TUN; the outer header copies both
    assert seen == {"ttl": 29, "tos": 0xBA, "inner_ttl": 29, "inner_tos": 0xBA}


def test_etr_carries_outer_ttl_and_ce_into_the_inner_header(topo: None) -> None:
    from scapy.layers.inet import IP, UDP

    from lispnet.dataplane.encap import lisp_header

    def lisp(tos: int, text: bytes) -> str:
        inner = IP(src="10.1.0.2", dst="10.2.0.2", ttl=64, tos=tos) / UDP(sport=5555, dport=7002) / text
        return (lisp_header(0x123456, 0, 1) + bytes(inner)).hex()

    procs = run_xtrs("on")
    try:
        # outer TTL 5 and CE, as if the underlay had routed and marked the packets
        _, out = with_receiver(
            lambda: ns_popen(ns("h2"), [sys.executable, "-c", MARKED_RECV], stdout=subprocess.PIPE, text=True),
            lambda: ns_run(ns("x1"), [sys.executable, "-c", MARKED_SEND, "192.168.0.1", "5", "3", "192.168.0.2",
                                      lisp(0x02, b"ect"), lisp(0x00, b"not-ect")], check=True),
            timeout=20)
    finally:
        _s1, s2 = stop_xtrs(procs)
    got = json.loads(out.strip().splitlines()[-1])
    # min(64, 5) = 5, then x2 forwards it (4); ECT(0) became CE; the not-ECT one is dropped
    assert got == [{"data": "ect", "ttl": 4, "tos": 3}]
    assert s2.get("drop.ecn-ce-not-ect") == 1


def test_malformed_lisp_packets_are_counted_and_the_etr_keeps_forwarding(topo: None) -> None:
    """Garbage to UDP 4341 - too short, not IP inside, a truncated IPv6 header, random bytes -
    under an outer CE and a low TTL (the TTL/ECN path reads the inner header): each is
    dropped and counted by reason, and a good packet right after still arrives."""
    import os as _os

    from scapy.layers.inet import IP, UDP

    from lispnet.dataplane.encap import lisp_header

    hdr = lisp_header(0x123456, 0, 1)
    good = (hdr + bytes(IP(src="10.1.0.2", dst="10.2.0.2", ttl=64, tos=2) / UDP(sport=5, dport=7002) / b"after")).hex()
    garbage = [hdr[:5].hex(), (hdr + b"\x00" * 30).hex(), (hdr + b"\x60" + b"\x00" * 19).hex(),
               (hdr + _os.urandom(200)).hex(), _os.urandom(3).hex()]
    procs = run_xtrs("on")
    try:
        _, out = with_receiver(
            lambda: ns_popen(ns("h2"), [sys.executable, "-c", MARKED_RECV], stdout=subprocess.PIPE, text=True),
            lambda: ns_run(ns("x1"), [sys.executable, "-c", MARKED_SEND, "192.168.0.1", "5", "3", "192.168.0.2",
                                      *garbage, good], check=True),
            timeout=20)
        alive = [p.poll() is None for p in procs]
    finally:
        _s1, s2 = stop_xtrs(procs)
    assert alive == [True, True]
    assert json.loads(out.strip().splitlines()[-1]) == [{"data": "after", "ttl": 4, "tos": 3}]
    assert s2.get("drop.short-lisp-packet", 0) >= 2 and s2.get("drop.bad-inner-packet", 0) >= 1, s2
    assert s2.get("drop.bug", 0) == 0, s2
