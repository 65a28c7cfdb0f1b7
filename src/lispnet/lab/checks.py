"""End-to-end checks on a running lab (used by ``lispnet demo`` and the integration tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .lab import Lab, _get_json


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


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


def demo_checks(lab: Lab) -> list[tuple[str, Any]]:
    """The demo's checks in order, as (title, thunk) pairs."""
    return [
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


__all__ = ["CheckResult", "check_ping", "demo_checks", "ping", "api", "cache_has", "forwarding"]
