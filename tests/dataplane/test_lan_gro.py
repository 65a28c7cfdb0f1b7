"""GRO-merged UDP from the LAN through the kernel backends (root + clang).

With GRO, UDP GRO forwarding and batched NAPI polls on x1's EID interface (what the TUN
xTR sets up for its UDP super-packets, ``tun_uso``; any NIC with ``rx-udp-gro-forwarding``
does the same), runs of a flow's datagrams reach the backend as one UDP GSO packet.  Each
backend must carry them with every datagram boundary and byte intact: the eBPF program
encapsulates them keeping ``gso_size`` and has the ETR split them (a stripped UDP-tunnel
super-packet would be cut as a tunnel packet later); VXLAN-GPE and VXLAN are the kernel's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from kernel_topo import Topo, have_root, start_pair  # noqa: E402
from udp_exact import UDP_SINK, UDP_SOURCE, with_receiver  # noqa: E402

IID = 1000
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not have_root() or shutil.which("clang") is None, reason="needs root, ip netns and clang"),
]

BATCH = """
from lispnet.dataplane.lan_gro import LanGro
assert LanGro(50).enable("eid0")
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[Topo]:
    from lispnet.dataplane import bpf_build

    bpf_build.build()
    t = Topo("lg")
    try:
        t.build()
        t.ns("x1", sys.executable, "-c", BATCH)
        yield t
    finally:
        t.destroy()


def tx_packets(topo: Topo, node: str, dev: str) -> int:
    return int(topo.ns(node, "cat", f"/sys/class/net/{dev}/statistics/tx_packets").stdout)


@pytest.mark.parametrize("kind", ["ebpf", "vxlan-gpe", "vxlan"])
@pytest.mark.parametrize("dst", ["10.2.0.2", "fd02::2"])
def test_gro_merged_udp_crosses_datagram_exact(topo: Topo, kind: str, dst: str) -> None:
    dps = start_pair(kind, topo, IID)
    try:
        assert topo.ping("h1", dst, count=2)
        skbs = tx_packets(topo, "x1", "up0")
        src, out = with_receiver(
            lambda: subprocess.Popen(["ip", "netns", "exec", topo.names["h2"], sys.executable, "-c", UDP_SINK, dst],
                                     stdout=subprocess.PIPE, text=True),
            lambda: topo.ns("h1", sys.executable, "-c", UDP_SOURCE, dst, timeout=120))
        sent = int(src.stdout.split()[0])
        skbs = tx_packets(topo, "x1", "up0") - skbs
        stats = [dp.stats() for dp in dps]
    finally:
        for dp in dps:
            dp.stop()
    got = json.loads(out.strip().splitlines()[-1])
    assert got["bad"] == 0 and got["dup"] == 0, got
    assert got["ok"] >= 0.9 * sent, (got, sent)
    # the runs crossed the underlay merged: far fewer packets left x1 than datagrams
    assert skbs < sent // 4, (skbs, sent)
    if kind == "ebpf":
        x1, x2 = stats
        assert x1["encapsulated"] >= got["ok"]  # counted per datagram, not per super-packet
        assert x2["gso_batches"] > 0 and x2["decapsulated"] >= got["ok"]
        assert not {k: v for k, v in x1.items() if k.startswith("drop") and v}


LAN_STATE = """
import json
from lispnet.dataplane.lan_gro import lan_state
print(json.dumps(lan_state("eid0")))
"""


@pytest.mark.parametrize("lan_gro", [True, False])
def test_vxlan_backend_sets_up_its_lan_and_restores_it(topo: Topo, lan_gro: bool) -> None:
    from lispnet.dataplane.vxlan import VxlanDataplane

    def state() -> dict[str, Any]:
        return dict(json.loads(topo.ns("x2", sys.executable, "-c", LAN_STATE).stdout))

    before = state()
    dp = VxlanDataplane("vxlan-gpe", netns=topo.names["x2"], lan_gro=lan_gro, lan_batch_us=30)
    dp.set_instances({IID: "eid0"})
    dp.set_local_rlocs([ip_address("192.168.2.1")], 1)
    dp.start(lambda m: None)
    try:
        during = state()
    finally:
        dp.stop()
    assert state() == before and before["rx-udp-gro-forwarding"] is False
    if lan_gro:
        assert during == {"rx-gro": True, "rx-udp-gro-forwarding": True, "gro_flush_timeout": 30000,
                          "napi_defer_hard_irqs": 2}
    else:
        assert during == before


def test_batching_left_by_a_killed_daemon_is_not_kept_for_good(topo: Topo) -> None:
    """A daemon killed with its LAN set up leaves the NAPI values behind; the next one
    recognises them as ours and hands the interface back with the kernel's defaults."""
    from lispnet.dataplane.lan_gro import LanGro

    def state() -> dict[str, Any]:
        return dict(json.loads(topo.ns("x2", sys.executable, "-c", LAN_STATE).stdout))

    before = state()
    killed = LanGro(25, topo.names["x2"])
    killed.enable("eid0")  # not restored: a SIGKILLed daemon
    assert state()["gro_flush_timeout"] == 25000
    second = LanGro(25, topo.names["x2"])
    assert second.enable("eid0")
    second.restore()
    after = state()
    assert after["gro_flush_timeout"] == 0 and after["napi_defer_hard_irqs"] == 0
    assert before["gro_flush_timeout"] == 0
    killed.restore()  # the features too, for the tests after this one
    assert state() == before
