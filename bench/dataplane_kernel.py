#!/usr/bin/env python3
"""Kernel fast-path benchmark: eBPF LISP and VXLAN-GPE next to plain routing, same run.

Lab (root, namespaces ``lnb-bench*``): h1 - x1 = u = x2 - h2 (tests/dataplane/kernel_topo.py),
one lab per mode, the backend programmed by hand; h1 -> h2 is measured with iperf3 (TCP
throughput) and with 64-byte frames (UDP payload 18 bytes) per second.

UDP packets per second: iperf3 as the sender tops out near 60 kpps here, which measures
iperf3, not forwarding.  The default sender (``--udp-sender blast``, ``bench/blaster.py``)
is one process per CPU in h1, each sending 18-byte datagrams as fast as ``send`` goes on
its own connected socket (distinct source ports, so flows spread like real traffic), to
a sink socket in h2 that never reads; the rate is what *arrived* at h2 (``rx_packets`` of
its interface over the interval), so drops anywhere count against the path.
``--udp-sender iperf3`` keeps the old measurement for comparison.  Arrivals are counted
at h2's UDP layer (datagrams delivered or dropped at the full socket): a GSO super-packet
that reaches h2 whole is one ``rx_packets`` but many datagrams.

LAN GRO: the VXLAN backends set x1's EID interface up as the daemon does by default
(``[node] lan-gro``, ``lispnet.dataplane.lan_gro``: GRO, UDP GRO forwarding, NAPI polls
batched over 20 µs), so runs of a flow's datagrams are tunnelled as one packet; the eBPF
backend leaves it alone.  Mode ``plain-batched`` is plain routing with the same LAN set-up,
the like-for-like base for the VXLAN numbers; the report gives ratios to both bases.

Pairing: the machine is shared and its speed drifts by tens of percent within a minute,
so every mode's lab is built once and kept up, and each round measures all modes back to
back (the order rotates from round to round); besides the median of each mode, the report
gives the median of the per-round ratios mode/plain, whose two terms were measured seconds
apart under the same background load.  ``--json`` prints every sample.

    python bench/dataplane_kernel.py --modes plain,ebpf,vxlan-gpe --seconds 3 --rounds 7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dataplane"))
sys.path.insert(0, str(ROOT / "src"))

from blaster import BLAST, PAYLOAD_64B_FRAME, SINK  # noqa: E402
from kernel_topo import Topo, start_pair  # noqa: E402

IID = 1000


def setup(mode: str, topo: Topo) -> list[Any]:
    """Program x1 and x2 for ``mode``; returns the backends to stop."""
    return [] if mode == "plain" else start_pair(mode, topo, IID)


def iperf(topo: Topo, seconds: float, udp: bool) -> float:
    server = subprocess.Popen(
        ["ip", "netns", "exec", topo.h2, "iperf3", "-s", "-1", "-p", "5299"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.4)
        args = ["-u", "-b", "0", "-l", "18"] if udp else []
        proc = topo.ns(
            "h1", "iperf3", "-c", "10.2.0.2", "-p", "5299", "-t", str(seconds), "-J", *args,
            check=False, timeout=seconds + 30,
        )  # fmt: skip
        data = json.loads(proc.stdout)
        end = data["end"]
        if udp:
            s = end["sum"]
            return (float(s["packets"]) - float(s.get("lost_packets", 0))) / float(s["seconds"])
        return float(end["sum_received"]["bits_per_second"])
    except (ValueError, KeyError):
        return 0.0
    finally:
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _rx_packets(topo: Topo, node: str, dev: str) -> int:
    """Datagrams that reached ``node``'s UDP layer (delivered, or dropped at the full socket)."""
    del dev
    lines = [ln.split() for ln in topo.ns(node, "cat", "/proc/net/snmp").stdout.splitlines() if ln.startswith("Udp:")]
    row = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))
    return row["InDatagrams"] + row["InErrors"]


BATCH_LAN = """
from lispnet.dataplane.lan_gro import LanGro
assert LanGro(20).enable("eid0")
"""


def blast(topo: Topo, seconds: float, senders: int) -> float:
    """64-byte frames per second arriving at h2 from ``senders`` parallel senders in h1
    (h2 runs a sink socket that never reads: the frames count at its interface)."""
    sink = subprocess.Popen(
        ["ip", "netns", "exec", topo.h2, sys.executable, "-c", SINK, "10.2.0.2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None
        sink.stdout.readline()
        return _blast(topo, seconds, senders)
    finally:
        sink.communicate(input="", timeout=10)


def _blast(topo: Topo, seconds: float, senders: int) -> float:
    before = _rx_packets(topo, "h2", "eth0")
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", topo.h1, sys.executable, "-c", BLAST, "10.2.0.2", str(40000 + i), str(seconds), str(PAYLOAD_64B_FRAME)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(senders)
    ]
    for proc in procs:
        proc.wait(timeout=seconds + 30)
    elapsed = time.monotonic() - t0
    time.sleep(0.2)
    return (_rx_packets(topo, "h2", "eth0") - before) / max(elapsed, seconds)


class Bench:
    """One mode's lab, built once and measured every round."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.topo = Topo(f"bench{mode.replace('-', '')[:8]}", plain=mode.startswith("plain"))
        self.backends: list[Any] = []

    def __enter__(self) -> Bench:
        try:
            self.topo.build()
            self.backends = setup(self.mode.replace("plain-batched", "plain"), self.topo)
            if self.mode == "plain-batched":
                self.topo.ns("x1", sys.executable, "-c", BATCH_LAN)
            if not self.topo.ping("h1", "10.2.0.2", count=2):
                raise RuntimeError(f"{self.mode}: no connectivity")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for dp in self.backends:
            dp.stop()
        self.backends = []
        self.topo.destroy()

    def measure(self, seconds: float, udp_sender: str, senders: int) -> dict[str, float]:
        udp = blast(self.topo, seconds, senders) if udp_sender == "blast" else iperf(self.topo, seconds, True)
        return {"tcp_bps": iperf(self.topo, seconds, False), "udp64_pps": udp}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="plain,plain-batched,ebpf,vxlan-gpe",
                    help="comma list: plain,plain-batched,ebpf,vxlan-gpe,vxlan")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--udp-sender", choices=("blast", "iperf3"), default="blast", help="64-byte UDP sender")
    ap.add_argument("--senders", type=int, default=os.cpu_count() or 2, help="parallel blast senders")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "plain" not in modes:
        modes.insert(0, "plain")
    from lispnet.dataplane import bpf_build

    if "ebpf" in modes:
        bpf_build.build()
    print(f"load average before: {load_average()}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with contextlib.ExitStack() as stack:
        labs = {m: stack.enter_context(Bench(m)) for m in modes}
        for rnd in range(args.rounds):
            order = modes[rnd % len(modes) :] + modes[: rnd % len(modes)]
            for mode in order:
                r = labs[mode].measure(args.seconds, args.udp_sender, args.senders)
                runs[mode].append(r)
                print(
                    f"round {rnd + 1} {mode:13s} tcp {r['tcp_bps'] / 1e9:6.2f} Gbit/s   "
                    f"udp64 {r['udp64_pps'] / 1e3:7.0f} kpps   (load {load_average()})",
                    flush=True,
                )
    keys = ("tcp_bps", "udp64_pps")
    med = {m: {k: statistics.median(r[k] for r in runs[m]) for k in keys} for m in modes}
    bases = [b for b in ("plain", "plain-batched") if b in modes]
    ratios = {
        b: {
            m: {
                k: statistics.median(r[k] / p[k] if p[k] else 0.0 for r, p in zip(runs[m], runs[b], strict=True))
                for k in keys
            }
            for m in modes
        }
        for b in bases
    }
    print(f"\nmedians over {args.rounds} rounds; per base: ratio of the medians / median of the per-round ratios")
    for m in modes:
        tcp, pps = med[m]["tcp_bps"], med[m]["udp64_pps"]
        line = f"  {m:13s} TCP {tcp / 1e9:6.2f} Gbit/s   UDP 64 B {pps / 1e3:7.0f} kpps"
        for b in bases:
            base, rb = med[b], ratios[b][m]
            line += (f" | vs {b}: TCP {tcp / base['tcp_bps'] * 100:5.1f} / {rb['tcp_bps'] * 100:5.1f} %, "
                     f"UDP {pps / base['udp64_pps'] * 100:5.1f} / {rb['udp64_pps'] * 100:5.1f} %")
        print(line)
    print(f"load average after: {load_average()}")
    if args.json:
        print(json.dumps({"runs": runs, "median": med, "median_ratio": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
