"""The demo topology in network namespaces, end to end (root only; one lab per module)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from lispnet.dataplane import netlink
from lispnet.lab import checks
from lispnet.lab.lab import Lab, down, ns_popen, up
from lispnet.lab.topology import load_topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

LAB = f"lnx-t{os.getpid() % 10000}"


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    topo = load_topology("demo").with_name(LAB)
    request.addfinalizer(lambda: down(LAB))
    yield up(topo, "tun", timeout=90)


def test_first_packet_triggers_map_request_and_fills_cache(lab: Lab) -> None:
    # runs first in the module: the map-cache of xtr1 is still empty
    res = checks.first_packet_check(lab)
    assert res.ok, res.detail
    assert checks.cache_has(lab, "xtr1", "10.2.0.0/24")


@pytest.mark.parametrize(
    ("src", "dst"),
    [("h1", "10.2.0.10"), ("h2", "10.1.0.10"), ("h1", "fd00:2::10"), ("h2", "fd00:1::10")],
)
def test_pings_both_ways(lab: Lab, src: str, dst: str) -> None:
    res = checks.check_ping(lab, f"{src}->{dst}", src, dst)
    assert res.ok, res.detail


def test_both_rloc_families_used(lab: Lab) -> None:
    checks.ping(lab, "h1", "10.2.0.10")
    checks.ping(lab, "h2", "10.1.0.10")
    fwd1 = checks.forwarding(lab, "xtr1")
    fwd2 = checks.forwarding(lab, "xtr2")
    # xtr2 prefers its IPv6 RLOC, xtr1 its IPv4 RLOC
    assert fwd1.get("encap.packets.fd00:255::12", 0) > 0
    assert fwd2.get("encap.packets.10.255.0.11", 0) > 0


def test_non_lisp_host_through_pxtr(lab: Lab) -> None:
    res = checks.pxtr_check(lab)
    assert res.ok, res.detail


def test_instances_isolated(lab: Lab) -> None:
    assert checks.check_ping(lab, "iid100", "h1b", "10.2.0.20").ok
    assert checks.check_ping(lab, "iso", "h1", "10.2.0.20", expect=False, count=2).ok
    assert checks.check_ping(lab, "iso", "h1b", "10.2.0.10", expect=False, count=2).ok


@pytest.mark.skipif(shutil.which("tshark") is None or shutil.which("tcpdump") is None, reason="needs tcpdump+tshark")
def test_underlay_carries_only_lisp(lab: Lab, tmp_path: os.PathLike[str]) -> None:
    pcap = os.path.join(str(tmp_path), "ul.pcap")
    cap = ns_popen(lab.topology.underlay_ns, ["tcpdump", "-i", "ul", "-w", pcap, "-U", "ip or ip6"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        assert checks.ping(lab, "h1", "10.2.0.10", count=3)[1] == 3
        assert checks.ping(lab, "h2", "fd00:1::10", count=3)[1] == 3
        time.sleep(0.5)
    finally:
        cap.terminate()
        cap.wait(5)
    rlocs = {a for n in lab.nodes.values() if n.kind != "host" for a in n.addresses}
    out = subprocess.run(
        ["tshark", "-r", pcap, "-T", "fields", "-E", "separator=|", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src",
         "-e", "ipv6.dst", "-e", "udp.dstport", "-e", "udp.srcport", "-e", "lisp-data.flags.nonce",
         "-e", "frame.protocols", "-Y", "not icmpv6.type >= 133 or udp"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    data_packets = 0
    for line in out:
        f = line.split("|")
        layers = f[7].split(":")
        outer6 = "ipv6" in layers and ("ip" not in layers or layers.index("ipv6") < layers.index("ip"))
        src, dst = (f[2], f[3]) if outer6 else (f[0], f[1])
        src, dst = src.split(",")[0], dst.split(",")[0]
        if not src:
            continue
        assert src in rlocs and dst in rlocs, f"non-RLOC address on the underlay: {line}"
        ports = {f[4], f[5]}
        assert ports & {"4341", "4342"}, f"not LISP: {line}"
        if "4341" in ports:
            data_packets += 1
            assert f[6] == "1" and "lisp-data" in layers, f"bad LISP data header: {line}"
    assert data_packets >= 12


def test_teardown_leaves_nothing() -> None:
    name = f"lnx-z{os.getpid() % 10000}"
    topo = load_topology("demo").with_name(name)
    from lispnet.lab.lab import build

    build(topo)  # no daemons: only namespaces and links, then remove them
    assert any(n.startswith(f"{name}-") for n in netlink.list_namespaces())
    down(name)
    assert not any(n.startswith(f"{name}-") for n in netlink.list_namespaces())
