"""The demo lab once per kernel data plane, through the daemon (root only).

For each backend (``ebpf``, ``vxlan-gpe``, ``vxlan``, and a mixed lab where an eBPF
xTR and a TUN xTR talk LISP to each other) the demo topology comes up and every demo
check must pass: first packet, IPv4/IPv6 EIDs both ways, PETR/PITR, instance
isolation, the data plane actually in use, and the underlay as tshark decodes it.
The ``tun`` backend has its own module (``test_lab.py``).

Then the daemon's exit: after SIGKILL its kernel state stays, the next start removes
it and works again; SIGTERM removes programs, devices, rules and routes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lispnet.lab import checks
from lispnet.lab.lab import Lab, down, ns_popen, up, wait_ready
from lispnet.lab.topology import load_topology, parse_dataplanes

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

BACKENDS = {"ebpf": "ebpf", "gpe": "vxlan-gpe", "vxlan": "vxlan", "mixed": "ebpf,xtr2=tun"}


def _available(spec: str) -> bool:
    from lispnet.dataplane import ebpf, vxlan

    kinds = {k for k in (parse_dataplanes(spec)[0], *parse_dataplanes(spec)[1].values())}
    if "ebpf" in kinds:
        from lispnet.dataplane import bpf_build

        try:
            bpf_build.build()
        except bpf_build.BuildError:
            return False
        if not ebpf.supported()[0]:
            return False
    return all(vxlan.supported(k)[0] for k in kinds if k.startswith("vxlan"))


@pytest.fixture(scope="module", params=list(BACKENDS))
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    spec = BACKENDS[request.param]
    if not _available(spec):
        pytest.skip(f"data plane {spec} not available here")
    name = f"lnk-{request.param}{os.getpid() % 10000}"
    default, per_node = parse_dataplanes(spec)
    topo = load_topology("demo").with_name(name).with_dataplanes(per_node)
    try:
        yield up(topo, default, timeout=90)
    finally:
        down(name)


def test_demo_checks(lab: Lab) -> None:
    failed = []
    for key, thunk in checks.demo_checks(lab):
        out = thunk()
        for res in out if isinstance(out, list) else [out]:
            if not res.ok and not res.not_applicable:
                failed.append(f"{key}: {res.name}: {res.detail}")
    assert not failed, "\n".join(failed)


def _kernel_state(lab: Lab, node: str) -> str:
    """Our filters, devices, rules and routes in ``node`` (empty when clean)."""
    out = []
    for dev in ("lan0", "lan100", "ul0"):
        res = lab.exec(node, ["tc", "filter", "show", "dev", dev, "ingress"])
        out += [f"{dev}: {line}" for line in res.stdout.splitlines() if "lisp" in line]
    links = lab.exec(node, ["ip", "-o", "link"]).stdout
    out += [line for line in links.splitlines() if "lisp-gpe0" in line or "lisp-vxl0" in line or "lispm" in line]
    for fam in ("-4", "-6"):
        routes = lab.exec(node, ["ip", fam, "route", "show", "table", "all", "proto", "76"]).stdout
        out += routes.splitlines()
        rules = lab.exec(node, ["ip", fam, "rule"]).stdout
        out += [line for line in rules.splitlines() if "lookup 19" in line]  # tables 0x4C00.. / 0x4D00..
    return "\n".join(line for line in out if line.strip())


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still running")


def test_kill_restart_and_terminate_clean_up(lab: Lab) -> None:
    kind = lab.topology.router("xtr1").dataplane or lab.dataplane
    if kind == "tun":
        pytest.skip("kernel backends only")
    info = lab.nodes["xtr1"]
    assert info.pid is not None and info.config is not None
    assert _kernel_state(lab, "xtr1"), "the backend left no trace in the kernel while running"
    os.kill(info.pid, signal.SIGKILL)
    _wait_gone(info.pid)
    assert _kernel_state(lab, "xtr1"), "after SIGKILL the kernel state is still there (until the next start)"
    with open(info.log or os.devnull, "ab") as logf:
        proc = ns_popen(info.namespace, [sys.executable, "-m", "lispnet", "run", info.config],
                        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    info.pid = proc.pid
    lab.save()
    wait_ready(lab, timeout=30)
    assert checks.check_ping(lab, "after restart", "h1", "10.2.0.10").ok
    assert checks.check_ping(lab, "after restart", "h1b", "10.2.0.20").ok
    state = _kernel_state(lab, "xtr1")
    if kind == "ebpf":  # one filter per interface: the restart replaced the stale ones
        assert state.count("lan0:") == 1 and state.count("ul0:") == 1, state
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=15)
    assert _kernel_state(lab, "xtr1") == ""
