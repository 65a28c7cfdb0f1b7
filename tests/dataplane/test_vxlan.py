"""Kernel VXLAN-GPE / VXLAN data planes: encodings and namespace tests (root).

Same lab as the eBPF tests (``kernel_topo.py``); the backend is programmed by hand.
"""

from __future__ import annotations

import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from lispnet.dataplane.base import FwdEntry, FwdLocator
from lispnet.dataplane.vxlan import (
    LWTUNNEL_ENCAP_IP,
    LWTUNNEL_ENCAP_IP6,
    VxlanDataplane,
    best_locators,
    encap_attrs,
    multipath_attr,
)
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix

sys.path.insert(0, str(Path(__file__).parent))
from kernel_topo import Topo, have_root, iperf3_tcp  # noqa: E402

IID = 1000
A = ip_address


def P(text: str) -> EidPrefix:
    return EidPrefix.parse(text, IID)


def loc(addr: str, priority: int = 1, weight: int = 100, up: bool = True) -> FwdLocator:
    return FwdLocator(A(addr), priority, weight, up)


def test_encap_attrs_layout() -> None:
    kind, body = encap_attrs(IID, A("192.168.2.1"), A("192.168.1.1"))
    assert kind == LWTUNNEL_ENCAP_IP
    # LWTUNNEL_IP_ID (1): be64 id
    length, typ = struct.unpack_from("=HH", body)
    assert (length, typ) == (12, 1) and int.from_bytes(body[4:12], "big") == IID
    assert bytes([192, 168, 2, 1]) in body and bytes([192, 168, 1, 1]) in body
    kind6, body6 = encap_attrs(IID, A("fc00:2::1"), None)
    assert kind6 == LWTUNNEL_ENCAP_IP6 and A("fc00:2::1").packed in body6


def test_multipath_and_best_locators() -> None:
    locs = (loc("192.168.2.1", 1, 30), loc("192.168.2.2", 1, 70), loc("192.168.2.3", 2), loc("192.168.2.4", 0, up=False))
    assert [str(r.address) for r in best_locators(locs)] == ["192.168.2.1", "192.168.2.2"]
    assert best_locators((loc("192.168.2.1", 255),)) == []
    raw = multipath_attr([(5, 30, 2, b"\0" * 12, None), (5, 70, 2, b"\0" * 12, None)])
    length, flags, hops, ifindex = struct.unpack_from("=HBBi", raw)
    assert (flags, hops, ifindex) == (0, 29, 5) and length == len(raw) // 2


netns = pytest.mark.netns
needs = pytest.mark.skipif(not have_root(), reason="needs root and ip netns")


@pytest.fixture(scope="module")
def topo() -> Iterator[Topo]:
    t = Topo("vx")
    try:
        t.build()
        yield t
    finally:
        t.destroy()


@pytest.fixture(params=["vxlan-gpe", "vxlan"])
def pair(request: pytest.FixtureRequest, topo: Topo) -> Iterator[tuple[VxlanDataplane, VxlanDataplane]]:
    kind = request.param
    x1 = VxlanDataplane(kind, netns=topo.x1)
    x2 = VxlanDataplane(kind, netns=topo.x2)
    for dp, rlocs in ((x1, ["192.168.1.1", "fc00:1::1"]), (x2, ["192.168.2.1", "fc00:2::1"])):
        dp.set_instances({IID: "eid0"})
        dp.set_local_rlocs([A(r) for r in rlocs], 1)
    x1.start(lambda m: None)
    x2.start(lambda m: None)
    try:
        yield x1, x2
    finally:
        try:
            x1.stop()
        finally:
            x2.stop()


def install_both_ways(x1: VxlanDataplane, x2: VxlanDataplane) -> None:
    x1.install(FwdEntry(P("10.2.0.0/24"), (loc("192.168.2.1"),)))
    x1.install(FwdEntry(P("fd02::/64"), (loc("fc00:2::1"),)))
    x2.install(FwdEntry(P("10.1.0.0/24"), (loc("fc00:1::1"),)))
    x2.install(FwdEntry(P("fd01::/64"), (loc("192.168.1.1"),)))


@netns
@needs
def test_ping_and_tcp(pair: tuple[VxlanDataplane, VxlanDataplane], topo: Topo) -> None:
    x1, x2 = pair
    install_both_ways(x1, x2)
    assert topo.ping("h1", "10.2.0.2")
    assert topo.ping("h1", "fd02::2")
    bps = iperf3_tcp(topo, "10.2.0.2", 2)
    assert bps > 100e6, f"TCP over {x1.name}: {bps / 1e6:.0f} Mbit/s"
    assert x1.stats()["tx_packets"] > 0 and x2.stats()["rx_packets"] > 0


@netns
@needs
@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_underlay_carries_vni(pair: tuple[VxlanDataplane, VxlanDataplane], topo: Topo, tmp_path: Path) -> None:
    x1, x2 = pair
    install_both_ways(x1, x2)
    pcap = tmp_path / "vx.pcap"
    cap = subprocess.Popen(
        ["ip", "netns", "exec", topo.u, "tcpdump", "-U", "-ni", "p1", "-w", str(pcap), f"udp port {x1.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        assert topo.ping("h1", "10.2.0.2", count=3)
        time.sleep(1.0)
    finally:
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=5)
    decode = ["-d", f"udp.port=={x1.port},{'vxlan_gpe' if x1.name == 'vxlan-gpe' else 'vxlan'}"]
    field = "vxlan.vni"  # the GPE dissector shares the VXLAN fields
    out = subprocess.run(
        ["tshark", "-r", str(pcap), *decode, "-Y", "icmp.type == 8", "-T", "fields", "-e", field],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out and all(int(v) == IID for v in out), out
    # RFC 9300 5.3: the ITR sends a zero outer UDP checksum
    sums = subprocess.run(
        ["tshark", "-r", str(pcap), *decode, "-Y", "icmp.type == 8", "-T", "fields", "-e", "udp.checksum"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sums and all(int(v, 16) == 0 for v in sums), sums
    # decapsulated packets skip the full source validation our rules would otherwise cost
    assert topo.ns("x1", "cat", f"/proc/sys/net/ipv4/conf/{x1.device}/accept_local").stdout.strip() == "1"


@netns
@needs
def test_map_changes_and_negative_entries(pair: tuple[VxlanDataplane, VxlanDataplane], topo: Topo) -> None:
    x1, x2 = pair
    install_both_ways(x1, x2)
    assert topo.ping("h1", "10.2.0.2", count=1)
    t0 = time.perf_counter()
    x1.install(FwdEntry(P("10.2.0.2/32"), action=Action.DROP))
    assert time.perf_counter() - t0 < 0.010
    assert any(line.startswith("blackhole 10.2.0.2") for line in x1.routes(IID))
    assert not topo.ping("h1", "10.2.0.2", count=1, timeout=0.5)
    x1.remove(P("10.2.0.2/32"))
    assert topo.ping("h1", "10.2.0.2", count=1)
    # RLOC change to an unreachable RLOC, then back with the bad one down
    x1.install(FwdEntry(P("10.2.0.0/24"), (loc("192.168.2.99"),)))
    assert any("dst 192.168.2.99" in line for line in x1.routes(IID))
    assert not topo.ping("h1", "10.2.0.2", count=1, timeout=0.5)
    x1.install(FwdEntry(P("10.2.0.0/24"), (loc("192.168.2.99", up=False), loc("192.168.2.1", 2))))
    assert topo.ping("h1", "10.2.0.2", count=1)
    # natively forward: a throw route (falls through to the main table)
    x1.install(FwdEntry(P("10.2.0.0/24"), action=Action.NATIVELY_FORWARD))
    assert any(line.startswith("throw 10.2.0.0/24") for line in x1.routes(IID))
    x1.remove(P("10.2.0.0/24"))
    assert not any("10.2.0.0/24" in line for line in x1.routes(IID))


@netns
@needs
@pytest.mark.parametrize("kind", ["vxlan-gpe", "vxlan"])
def test_stop_removes_devices_routes_rules(kind: str, topo: Topo) -> None:
    dp = VxlanDataplane(kind, netns=topo.x1)
    dp.set_instances({IID: "eid0"})
    dp.set_local_rlocs([A("192.168.1.1")], 1)
    dp.start(lambda m: None)
    dp.install(FwdEntry(P("10.2.0.0/24"), (loc("192.168.2.1"),)))
    assert dp.routes(IID)
    assert "lookup" in topo.ns("x1", "ip", "rule").stdout and dp.device in topo.ns("x1", "ip", "link").stdout
    dp.stop()
    assert dp.device not in topo.ns("x1", "ip", "link").stdout
    rules = topo.ns("x1", "ip", "rule").stdout + topo.ns("x1", "ip", "-6", "rule").stdout
    assert "iif eid0" not in rules
    for fam in ("-4", "-6"):
        assert topo.ns("x1", "ip", fam, "route", "show", "table", "all", "proto", "76").stdout.strip() == ""


# --- VXLAN-GBP in the user-space path ------------------------------------------------------------
INNER = bytes.fromhex("4500001c0001000040017cdd0a0100020a020002") + bytes.fromhex("0800f7ff00000000")


def test_gbp_encap_decap_roundtrip() -> None:
    from lispnet.dataplane import gbp

    payload = gbp.encapsulate(INNER, IID, 0xBEEF, policy_applied=True)
    assert payload[:4] == bytes([0x88, 0x08, 0xBE, 0xEF])  # G, A, I flags and the group tag
    header, inner = gbp.decapsulate(payload)
    assert (header.vni, header.group_policy_id, header.policy_applied, inner) == (IID, 0xBEEF, True, INNER)
    with pytest.raises(gbp.GbpError):
        gbp.decapsulate(payload[:10])


def test_gbp_group_tag_from_config_and_over_a_socket() -> None:
    import socket

    from lispnet.config.model import NodeConfig
    from lispnet.dataplane import gbp

    cfg = NodeConfig.model_validate({"node": {"name": "x", "roles": ["xtr"]}, "xtr": {"gbp-group-tag": 4242}})
    enc = gbp.GbpEncapsulator.from_config(cfg)
    assert enc is not None and enc.group_tag == 4242
    assert gbp.GbpEncapsulator.from_config(NodeConfig.model_validate({"node": {"name": "x", "roles": ["xtr"]}})) is None
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    enc.port = rx.getsockname()[1]
    try:
        enc.send(INNER, 7, "127.0.0.1")
        header, inner = gbp.decapsulate(rx.recv(2048))
    finally:
        rx.close()
        enc.close()
    assert (header.vni, header.group_policy_id, inner) == (7, 4242, INNER)


def _ipv4_udp(payload: bytes, dport: int) -> bytes:
    udp = struct.pack("!HHHH", 49152, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([10, 255, 0, 11]),
                      bytes([10, 255, 0, 12]))
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:] + udp


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_gbp_packet_decodes_in_tshark(tmp_path: Path) -> None:
    from lispnet.dataplane import gbp

    pkt = _ipv4_udp(gbp.encapsulate(INNER, IID, 0x1234), 4789)
    pcap = tmp_path / "gbp.pcap"
    # classic pcap, LINKTYPE_RAW (101): the frame is the IP packet
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
                     + struct.pack("<IIII", 0, 0, len(pkt), len(pkt)) + pkt)
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e", "vxlan.gbp", "-e", "vxlan.vni",
         "-e", "vxlan.flag_g", "-e", "icmp.type"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    gbp_id, vni, g_flag, icmp = out.split("|")
    assert int(gbp_id, 0) == 0x1234 and int(vni) == IID and g_flag in ("1", "True") and icmp == "8", out
