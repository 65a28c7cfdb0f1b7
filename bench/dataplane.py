#!/usr/bin/env python3
"""Data-plane benchmark: iperf3 between two EID hosts through lispnet vs. plain IP routing.

Builds the demo topology twice (run as root):

* ``lispnet``: the full lab (MS/MR, xTRs with the TUN data plane), h1 -> h2 encapsulated;
* ``plain``: the same namespaces and links, no daemons, the xTRs route the EID prefixes
  natively over the underlay.

For each it runs an iperf3 TCP test and a 64-byte UDP flood (``-b 0``) from h1 to h2 and
prints Gbit/s, kpps (received) and the lispnet/plain ratio.

    python bench/dataplane.py [--seconds 5] [--dataplane tun]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from lispnet.dataplane import netlink
from lispnet.lab.lab import Lab, build, down, ns_popen, up
from lispnet.lab.topology import load_topology


def iperf(lab: Lab, args: list[str], seconds: int) -> dict[str, Any]:
    server = ns_popen(lab.namespace("h2"), ["iperf3", "-s", "-1", "-B", "10.2.0.10"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        res = lab.exec("h1", ["iperf3", "-c", "10.2.0.10", "-t", str(seconds), "-J", *args], timeout=seconds + 30)
        data: dict[str, Any] = json.loads(res.stdout)
        return data
    finally:
        server.wait(timeout=10) if server.poll() is None else None


def measure(lab: Lab, seconds: int) -> dict[str, float]:
    # warm the path (first packet resolves the mapping)
    lab.exec("h1", ["ping", "-c", "2", "-i", "0.2", "10.2.0.10"])
    tcp = iperf(lab, [], seconds)
    gbps = tcp["end"]["sum_received"]["bits_per_second"] / 1e9
    udp = iperf(lab, ["-u", "-l", "64", "-b", "0"], seconds)
    s = udp["end"]["sum"]
    received = s["packets"] - s["lost_packets"]
    kpps = received / s["seconds"] / 1e3
    sent_kpps = s["packets"] / s["seconds"] / 1e3
    return {"tcp_gbps": gbps, "udp_kpps": kpps, "udp_sent_kpps": sent_kpps}


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
    ap.add_argument("--dataplane", default="tun")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    results: dict[str, dict[str, float]] = {}
    name = f"bn{os.getpid() % 10000}"
    try:
        results["plain"] = measure(plain_lab(name + "p"), args.seconds)
    finally:
        down(name + "p")
    try:
        lab = up(load_topology("demo").with_name(name + "l"), args.dataplane)
        results["lispnet"] = measure(lab, args.seconds)
    finally:
        down(name + "l")
    p, lsp = results["plain"], results["lispnet"]
    print(f"{'':10} {'TCP Gbit/s':>12} {'UDP-64 kpps':>12} {'(sent kpps)':>12}")
    for k in ("plain", "lispnet"):
        r = results[k]
        print(f"{k:10} {r['tcp_gbps']:12.2f} {r['udp_kpps']:12.1f} {r['udp_sent_kpps']:12.1f}")
    print(f"{'ratio':10} {lsp['tcp_gbps'] / p['tcp_gbps']:12.2f} {lsp['udp_kpps'] / p['udp_kpps']:12.2f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
