"""End-to-end checks on a running lab (used by ``lispnet demo`` and the integration tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .lab import Lab, _get_json, ns_popen


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    not_applicable: bool = False
    """A check impossible on this backend by design: shown, not counted as a failure."""


def ping(lab: Lab, node: str, dst: str, count: int = 3, interval: float = 0.2, wait: float = 2.0) -> tuple[int, int]:
    """(sent, received) of a ping from ``node`` to ``dst``."""
    res = lab.exec(node, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), dst],
                   timeout=count * (interval + wait) + 10)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
    if not m:
        return count, 0
    return int(m.group(1)), int(m.group(2))


def api(lab: Lab, node: str, path: str) -> Any:
    return _get_json(lab.api(node) + path)


def itr_counter(lab: Lab, node: str, name: str) -> int:
    stats = api(lab, node, "/xtr/stats")
    return int(stats.get("itr", {}).get(name, 0))


def forwarding(lab: Lab, node: str) -> dict[str, int]:
    stats = api(lab, node, "/xtr/stats")
    fwd: dict[str, int] = stats.get("forwarding", {})
    return fwd


def cache_has(lab: Lab, node: str, prefix: str, iid: int = 0) -> bool:
    return any(e["eid-prefix"] == prefix and e["instance-id"] == iid and not e["negative"]
               for e in api(lab, node, "/map-cache"))


def check_ping(lab: Lab, name: str, node: str, dst: str, expect: bool = True, count: int = 3) -> CheckResult:
    sent, got = ping(lab, node, dst, count=count, wait=1.0 if not expect else 2.0)
    ok = (got == sent) if expect else (got == 0)
    return CheckResult(name, ok, f"{node} -> {dst}: {got}/{sent} replies" + ("" if expect else " (expected none)"))


def first_packet_check(lab: Lab) -> CheckResult:
    """h1 -> h2: the first packet triggers a Map-Request and is not lost."""
    before = itr_counter(lab, "xtr1", "map-requests-sent")
    sent, got = ping(lab, "h1", "10.2.0.10", count=3)
    after = itr_counter(lab, "xtr1", "map-requests-sent")
    ok = got == sent and after > before
    return CheckResult("ping h1 -> h2 (IPv4 EIDs), first packet triggers a Map-Request", ok,
                       f"{got}/{sent} replies, Map-Requests sent by xtr1: {before} -> {after}")


def dataplane_check(lab: Lab) -> CheckResult:
    """Every xTR / PxTR runs the backend its node file asks for (no silent TUN fallback)."""
    want = {r.name: (r.dataplane or lab.dataplane) for r in lab.topology.routers if r.kind != "msmr"}
    got = {name: str(api(lab, name, "/xtr/stats").get("dataplane")) for name in want}
    ok = all(got[n] == want[n] for n in want)
    return CheckResult("each xTR runs the requested data plane", ok,
                       ", ".join(f"{n}: {got[n]}" + ("" if got[n] == want[n] else f" (wanted {want[n]})") for n in got))


LISP_KINDS = ("tun", "ebpf")
VXLAN_PORTS = {"vxlan-gpe": 4790, "vxlan": 4789}


def _sender_kind(lab: Lab, node: str) -> str:
    return lab.topology.router(node).dataplane or lab.dataplane


def underlay_checks(lab: Lab) -> list[CheckResult]:
    """Capture xtr1's underlay port during h1 -> h2 (iid 0) and h1b -> h2b (iid 100) pings
    and decode it with tshark: LISP with N, I (instance-id) and L bits for tun/ebpf,
    the instance-id as VNI for VXLAN (which carries no nonce and no locator-status bits)."""
    kind = _sender_kind(lab, "xtr1")
    if shutil.which("tshark") is None or shutil.which("tcpdump") is None:
        return [CheckResult("underlay decodes in tshark", True, "tcpdump/tshark not installed", not_applicable=True)]
    port = 4341 if kind in LISP_KINDS else VXLAN_PORTS[kind]
    with tempfile.TemporaryDirectory() as tmp:
        pcap = os.path.join(tmp, "ul.pcap")
        cap = ns_popen(lab.topology.underlay_ns, ["tcpdump", "-i", "u-xtr1", "--immediate-mode", "-U", "-w", pcap, f"udp dst port {port}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (not os.path.exists(pcap) or os.path.getsize(pcap) < 24):
                time.sleep(0.05)  # tcpdump writes the file header once it captures
            time.sleep(0.5)
            replies = [ping(lab, "h1", "10.2.0.10", count=3)[1], ping(lab, "h1b", "10.2.0.20", count=3)[1]]
            time.sleep(0.5)
        finally:
            cap.terminate()
            cap.wait(5)
        if kind in LISP_KINDS:
            fields = ["lisp-data.flags.nonce", "lisp-data.nonce", "lisp-data.flags.iid", "lisp-data.iid",
                      "lisp-data.flags.lsb"]
            decode: list[str] = []
        else:
            fields = ["vxlan.vni"]
            decode = ["-d", f"udp.port=={port},{'vxlan_gpe' if kind == 'vxlan-gpe' else 'vxlan'}"]
        cmd = ["tshark", "-r", pcap, *decode, "-Y", "icmp.type == 8", "-T", "fields", "-E", "separator=|"]
        for f in fields:
            cmd += ["-e", f]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    if kind in LISP_KINDS:
        iids = [int(r[3] or 0) if r[2] in ("1", "True") else 0 for r in rows]
        nonces = {r[1] for r in rows}
        n_ok = bool(rows) and all(r[0] in ("1", "True") for r in rows) and len(nonces) > 1
        l_ok = bool(rows) and all(r[4] in ("1", "True") for r in rows)
        ok = n_ok and l_ok and 0 in iids and 100 in iids
        return [CheckResult(
            f"underlay decodes as LISP (tshark): N bit + nonce, I bit + instance-id, L bit ({kind})", ok,
            f"{len(rows)} echo requests from xtr1, instance-ids {sorted(set(iids))}, {len(nonces)} distinct nonces, "
            f"L bit {'set' if l_ok else 'missing'} (ping replies iid 0/100: {replies[0]}/3, {replies[1]}/3)")]
    vnis = sorted({int(r[0]) for r in rows if r[0]})
    return [
        CheckResult(f"underlay decodes as {kind.upper()} (tshark), VNI = instance-id", bool(rows) and vnis == [0, 100],
                    f"{len(rows)} echo requests from xtr1 on UDP {port}, VNIs {vnis} "
                    f"(ping replies iid 0/100: {replies[0]}/3, {replies[1]}/3)"),
        CheckResult("nonce and locator-status bits on the wire", True,
                    f"not applicable: a {kind.upper()} header carries no LISP nonce or locator-status bits (by design)",
                    not_applicable=True),
    ]


def demo_checks(lab: Lab) -> list[tuple[str, Any]]:
    """The demo's checks in order, as (title, thunk) pairs; a thunk returns one or more results."""
    return [
        ("dataplane", lambda: dataplane_check(lab)),
        ("first packet", lambda: first_packet_check(lab)),
        ("map-cache", lambda: CheckResult("map-cache of xtr1 holds 10.2.0.0/24", cache_has(lab, "xtr1", "10.2.0.0/24"),
                                          str([e["eid-prefix"] for e in api(lab, "xtr1", "/map-cache")]))),
        ("ipv6", lambda: check_ping(lab, "ping h1 -> h2 (IPv6 EIDs)", "h1", "fd00:2::10")),
        ("reverse", lambda: check_ping(lab, "ping h2 -> h1 (IPv4 and IPv6 EIDs)", "h2", "10.1.0.10")),
        ("reverse6", lambda: check_ping(lab, "ping h2 -> h1 (IPv6 EIDs)", "h2", "fd00:1::10")),
        ("pxtr", lambda: pxtr_check(lab)),
        ("iid", lambda: check_ping(lab, "instance 100: h1b -> h2b", "h1b", "10.2.0.20")),
        ("iso1", lambda: check_ping(lab, "isolation: h1 (iid 0) cannot reach h2b (iid 100)", "h1", "10.2.0.20",
                                    expect=False, count=2)),
        ("iso2", lambda: check_ping(lab, "isolation: h1b (iid 100) cannot reach h2 (iid 0)", "h1b", "10.2.0.10",
                                    expect=False, count=2)),
        ("underlay", lambda: underlay_checks(lab)),
    ]


def pxtr_check(lab: Lab) -> CheckResult:
    before = forwarding(lab, "pxtr")
    sent, got = ping(lab, "h1", "192.168.100.10", count=3)
    sent6, got6 = ping(lab, "h1", "fd00:100::10", count=2)
    after = forwarding(lab, "pxtr")
    dec = after.get("decap.packets", 0) - before.get("decap.packets", 0)
    enc = after.get("encap.packets", 0) - before.get("encap.packets", 0)
    ok = got == sent and got6 == sent6 and dec >= sent + sent6 and enc >= got + got6
    return CheckResult("h1 -> non-LISP host via the PETR, back via the PITR", ok,
                       f"IPv4 {got}/{sent}, IPv6 {got6}/{sent6}; pxtr decapsulated {dec}, encapsulated {enc}")


__all__ = [
    "CheckResult", "check_ping", "dataplane_check", "demo_checks", "ping", "api", "cache_has", "forwarding",
    "underlay_checks",
]
