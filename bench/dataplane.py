#!/usr/bin/env python3
"""Data-plane benchmark: iperf3 between two EID hosts through lispnet vs. plain IP routing.

Builds the demo topology twice (run as root):

* ``lispnet``: the full lab (MS/MR, xTRs with the TUN data plane), h1 -> h2 encapsulated;
* ``plain``: the same namespaces and links, no daemons, the xTRs route the EID prefixes
  natively over the underlay;
* ``plain-batched``: ``plain`` with xtr1's LAN interface set up as the xTR sets up its
  LANs (``[node] lan-gro``: GRO, UDP GRO forwarding, NAPI polls batched over
  ``lan-batch-us`` = 20 µs; ``lispnet.dataplane.lan_gro``): the kernel's own forwarding
  with the same batching, so the comparison is like for like.

For each it runs an iperf3 TCP test and a 64-byte UDP flood from h1 to h2, ``--runs``
times, and prints the medians of Gbit/s, kpps (received) and the lispnet/plain ratio,
plus the xTRs' batching counters.

UDP packets per second: iperf3 as the sender tops out near 60 kpps here (one thread, a
pacing timer), which measures iperf3, not forwarding.  The default sender
(``--udp-sender blast``, as in ``bench/dataplane_kernel.py``) is one Python process per
CPU in h1, each sending ``--udp-len`` (18) byte datagrams flat out on its own connected
socket (distinct source ports: distinct flows); the rate is what *arrived* at h2
(``rx_packets`` of its interface over the interval), so drops anywhere count against the
path.  18 bytes of UDP payload make a 64-byte Ethernet frame (with FCS).
``--udp-sender iperf3`` keeps the iperf3 flood (``--streams`` processes, ``-b 0``).

Labs are named ``lnv<pid>p`` (plain), ``lnv<pid>b`` (plain-batched) and ``lnv<pid>l``
(lispnet) and always taken down.

    python bench/dataplane.py [--seconds 5] [--runs 3] [--udp-sender blast|iperf3] [--dataplane tun]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from blaster import BLAST, SINK

from lispnet.dataplane import netlink
from lispnet.lab.lab import Lab, build, down, ns_popen, up
from lispnet.lab.topology import load_topology

TARGET_TCP_GBPS = 2.0
TARGET_UDP_KPPS = 150.0


def iperf(lab: Lab, args: list[str], seconds: int, streams: int = 1) -> list[dict[str, Any]]:
    """``streams`` iperf3 client/server pairs (separate processes, ports 5201...) in parallel.

    iperf3 3.12 runs all of one client's streams on one thread, so ``-P`` cannot produce
    more packets per second than one core; parallel processes can.
    """
    ports = [5201 + i for i in range(streams)]
    servers = [ns_popen(lab.namespace("h2"), ["iperf3", "-s", "-1", "-B", "10.2.0.10", "-p", str(p)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
    time.sleep(0.5)
    clients = [ns_popen(lab.namespace("h1"), ["iperf3", "-c", "10.2.0.10", "-p", str(p), "-t", str(seconds), "-J",
                                              *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
               for p in ports]
    try:
        return [json.loads(c.communicate(timeout=seconds + 30)[0]) for c in clients]
    finally:
        for srv in servers:
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()


def _udp_arrived(lab: Lab, node: str) -> int:
    """Datagrams the UDP layer of ``node`` got: delivered to a socket or dropped at it."""
    lines = [ln.split() for ln in lab.exec(node, ["cat", "/proc/net/snmp"]).stdout.splitlines() if ln.startswith("Udp:")]
    row = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))
    return row["InDatagrams"] + row["InErrors"]


def blast(lab: Lab, seconds: int, senders: int, udp_len: int) -> dict[str, float]:
    """Packets per second arriving at h2 from ``senders`` flat-out sender processes in h1.

    h2 holds a socket on the destination port that it never reads: its UDP counters
    (delivered + dropped at the full socket) count every datagram that made it through,
    also those that crossed the last hop inside a GSO super-packet, which the interface's
    ``rx_packets`` would count once.
    """
    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", SINK, "10.2.0.10"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        before = _udp_arrived(lab, "h2")
        t0 = time.monotonic()
        procs = [ns_popen(lab.namespace("h1"), [sys.executable, "-c", BLAST, "10.2.0.10", str(40000 + i),
                                                str(seconds), str(udp_len)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for i in range(senders)]
        sent = 0
        for proc in procs:
            out = proc.communicate(timeout=seconds + 30)[0]
            sent += int(out.strip() or 0)
        elapsed = max(time.monotonic() - t0, seconds)
        time.sleep(0.3)  # the queues drain
        received = _udp_arrived(lab, "h2") - before
    finally:
        sink.communicate(input="", timeout=10)
    return {"udp_kpps": received / elapsed / 1e3, "udp_sent_kpps": sent / elapsed / 1e3}


def measure(lab: Lab, seconds: int, streams: int, udp_len: int, sender: str = "blast") -> dict[str, float]:
    # warm the path (first packet resolves the mapping)
    lab.exec("h1", ["ping", "-c", "2", "-i", "0.2", "10.2.0.10"])
    tcp = iperf(lab, [], seconds)[0]
    gbps = tcp["end"]["sum_received"]["bits_per_second"] / 1e9
    if sender == "blast":
        return {"tcp_gbps": gbps, **blast(lab, seconds, streams, udp_len)}
    # -w: 2 MB socket buffers on both ends (the default 208 KB overflows at the receiver
    # under bursts on either path); several sender processes, since one iperf3 is the limit
    for _attempt in range(5):
        udps = iperf(lab, ["-u", "-l", str(udp_len), "-b", "0", "-w", "2M"], seconds, streams)
        errors = [u.get("error") for u in udps if "sum" not in u.get("end", {})]
        if not errors:
            break
        # iperf3's control connection shares the data path; under a flood it can time out
        print(f"iperf3 UDP failed ({errors}); again", file=sys.stderr)
        time.sleep(2)
    else:
        return {"tcp_gbps": gbps, "udp_kpps": float("nan"), "udp_sent_kpps": float("nan")}
    kpps = sent_kpps = 0.0
    for udp in udps:
        s = udp["end"]["sum"]
        kpps += (s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3
        sent_kpps += s["packets"] / s["seconds"] / 1e3
    return {"tcp_gbps": gbps, "udp_kpps": kpps, "udp_sent_kpps": sent_kpps}


def forwarding_stats(lab: Lab, node: str) -> dict[str, int]:
    import httpx

    try:
        data: dict[str, Any] = httpx.get(f"{lab.api(node)}/xtr/stats", timeout=5).json()
        fwd: dict[str, int] = data.get("forwarding", {})
        return fwd
    except Exception:  # noqa: BLE001 - stats are informative only
        return {}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the runs that produced a value (NaN: every attempt of that test failed)."""
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs if not math.isnan(r[k])]
        out[k] = statistics.median(vals) if vals else float("nan")
    return out


BATCH_LAN = """
from lispnet.dataplane.lan_gro import LanGro
assert LanGro(20).enable("lan0")
"""


def plain_lab(name: str) -> Lab:
    topo = load_topology("demo").with_name(name)
    lab = build(topo)
    routes = {"xtr1": ("10.2.0.0/24", "10.255.0.12", "lan0", "10.1.0.0/24"),
              "xtr2": ("10.1.0.0/24", "10.255.0.11", "lan0", "10.2.0.0/24")}
    for node, (remote, gw, lan, local) in routes.items():
        with netlink.open_ipr(lab.namespace(node)) as ipr:
            netlink.replace_route(ipr, local, dev=lan)
            netlink.replace_route(ipr, remote, gateway=gw)
    return lab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="measurements per path; the median is reported")
    ap.add_argument("--udp-sender", choices=("blast", "iperf3"), default="blast", help="64-byte UDP sender")
    ap.add_argument("--streams", type=int, default=0,
                    help="parallel UDP sender processes (default: one per CPU for blast, 4 for iperf3)")
    ap.add_argument("--udp-len", type=int, default=18, help="UDP payload bytes (18: 64-byte frames)")
    ap.add_argument("--dataplane", default="tun")
    ap.add_argument("--only", choices=("plain", "plain-batched", "lispnet"), help="measure one path only")
    args = ap.parse_args()
    streams = args.streams or ((os.cpu_count() or 2) if args.udp_sender == "blast" else 4)
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    runs: dict[str, list[dict[str, float]]] = {}
    name = f"lnv{os.getpid() % 10000}"
    load = os.getloadavg()[0]
    for kind, suffix in (("plain", "p"), ("plain-batched", "b")):
        if args.only not in (None, kind):
            continue
        try:
            lab = plain_lab(name + suffix)
            if kind == "plain-batched":
                res = lab.exec("xtr1", [sys.executable, "-c", BATCH_LAN])
                if res.returncode:
                    raise RuntimeError(f"batching xtr1's LAN failed: {res.stderr.strip()}")
            runs[kind] = [measure(lab, args.seconds, streams, args.udp_len, args.udp_sender) for _ in range(args.runs)]
        finally:
            down(name + suffix)
    stats: dict[str, dict[str, int]] = {}
    if args.only in (None, "lispnet"):
        try:
            lab = up(load_topology("demo").with_name(name + "l"), args.dataplane)
            runs["lispnet"] = [measure(lab, args.seconds, streams, args.udp_len, args.udp_sender) for _ in range(args.runs)]
            stats = {n: forwarding_stats(lab, n) for n in ("xtr1", "xtr2")}
        finally:
            down(name + "l")
    results = {k: median_of(v) for k, v in runs.items()}
    how = "iperf3 -u -b 0" if args.udp_sender == "iperf3" else "blast senders"
    print(f"load average at start {load:.2f}, at end {os.getloadavg()[0]:.2f}; median of {args.runs} runs; "
          f"UDP: {streams} x {how}, {args.udp_len}-byte payloads")
    print(f"{'':14} {'TCP Gbit/s':>8} {'UDP-64 kpps':>12} {'(sent kpps)':>12}")
    for k, r in results.items():
        print(f"{k:14} {r['tcp_gbps']:8.2f} {r['udp_kpps']:12.1f} {r['udp_sent_kpps']:12.1f}")
    for base in ("plain", "plain-batched"):
        if base in results and "lispnet" in results:
            p, lsp = results[base], results["lispnet"]
            print(f"{'/' + base:14} {lsp['tcp_gbps'] / p['tcp_gbps']:8.2f} {lsp['udp_kpps'] / p['udp_kpps']:12.2f}")
    if "lispnet" in results:
        r = results["lispnet"]
        print(f"issue-4 targets: TCP >= {TARGET_TCP_GBPS} Gbit/s: {'met' if r['tcp_gbps'] >= TARGET_TCP_GBPS else 'not met'}; "
              f"UDP-64 >= {TARGET_UDP_KPPS} kpps: {'met' if r['udp_kpps'] >= TARGET_UDP_KPPS else 'not met'} "
              f"(machine load {load:.2f}: results scale with the CPU left over)")
    for node, st in stats.items():
        sends, pkts = st.get("gso.udp-sends", 0), st.get("gso.udp-packets", 0)
        drops = {k: v for k, v in st.items() if k.startswith("drop.")}
        print(f"{node}: {pkts} packets in {sends} sendmsg ({pkts / max(sends, 1):.1f}/call), "
              f"{st.get('gso.coalesced-writes', 0)} coalesced TUN writes, "
              f"{st.get('tnl.super-packets', 0)} super-packets sent whole "
              f"({st.get('tnl.udp-super-packets', 0)} UDP), "
              f"{st.get('tnl.super-datagrams', 0)} received whole, drops {drops}")
    print(json.dumps({"results": results, "runs": runs, "load": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
