"""Build, run and tear down a LISP lab in network namespaces.

Layout for a lab called LAB (every name derives from LAB, so labs never collide):

* namespace ``LAB-ul`` holds two bridges: ``ul`` (the RLOC underlay) and ``mg`` (a
  management network that also reaches the root namespace through the veth
  ``LAB-mg`` (cut to 15 characters), so the CLI can talk to every node's REST API);
* one namespace ``LAB-NODE`` per router: ``ul0`` on the underlay with its RLOCs, ``mg0``
  on the management network (the API listens there), one veth per LAN;
* one namespace per host: ``eth0`` on its router's LAN, default routes to the router.

Each router runs ``lispnet run`` with a generated node file; ``up`` waits until every
ETR is registered (asked through the REST APIs), and writes ``lab.json`` (nodes,
addresses, API URLs, PIDs) in the lab's state directory.  ``down`` works from the names
alone: it stops the processes living in the lab's namespaces (found by PID through
``/proc/PID/ns/net``), deletes every namespace named ``LAB-*`` and the root veth, so it
also cleans up after a crash.

Processes are started inside a namespace with ``setns`` in the child (pyroute2), not
by shelling out to ``ip``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import netns as pr_netns

from ..dataplane import netlink
from .topology import Topology, node_config, to_toml

STATE_ROOT = Path(os.environ.get("LISPNET_LAB_DIR", "/run/lispnet/labs"))
MGMT_BASE = ipaddress.IPv4Network("198.18.0.0/15")

Progress = Callable[[str], None]


def _noop(_msg: str) -> None:
    return None


def mgmt_link_name(lab: str) -> str:
    return f"{lab[:12]}-mg"


def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab


# --- processes inside namespaces --------------------------------------------------------
def _enter(ns: str) -> Callable[[], None]:
    def pre() -> None:
        pr_netns.setns(ns, flags=0)
        os.setsid()

    return pre


def ns_popen(ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside namespace ``ns``."""
    return subprocess.Popen(list(argv), preexec_fn=_enter(ns), **kwargs)  # noqa: PLW1509


def ns_run(ns: str, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` and collect its output."""
    proc = ns_popen(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    res = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(argv)} in {ns} failed ({res.returncode}): {err.strip()}")
    return res


def ns_sysctls(ns: str, values: dict[str, str | int]) -> None:
    """Write sysctls inside ``ns`` (one child process for all of them)."""
    script = ";".join(f"open('/proc/sys/{k.replace('.', '/')}','w').write('{v}')" for k, v in values.items())
    ns_run(ns, [sys.executable, "-c", script], check=True)


def pids_in_namespace(ns: str) -> list[int]:
    """PIDs whose network namespace is ``ns`` (by inode of /run/netns/NS)."""
    try:
        target = os.stat(f"/run/netns/{ns}").st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _terminate(pids: list[int], timeout: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class LabError(RuntimeError):
    """The lab could not be built or did not become ready."""


@dataclass(slots=True)
class NodeInfo:
    name: str
    kind: str
    namespace: str
    addresses: list[str] = field(default_factory=list)
    api: str | None = None
    pid: int | None = None
    config: str | None = None
    log: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "namespace": self.namespace, "addresses": self.addresses,
            "api": self.api, "pid": self.pid, "config": self.config, "log": self.log,
        }


@dataclass(slots=True)
class Lab:
    """A running (or described) lab."""

    topology: Topology
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    mgmt_prefix: str = ""
    dataplane: str = "tun"
    """The default backend of the xTRs (a router's own ``dataplane`` key wins)."""

    @property
    def name(self) -> str:
        return self.topology.name

    def api(self, node: str) -> str:
        url = self.nodes[node].api
        if url is None:
            raise KeyError(f"node {node} has no API")
        return url

    def namespace(self, node: str) -> str:
        return self.topology.namespace(node)

    def exec(self, node: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return ns_run(self.namespace(node), argv, timeout=timeout)

    def save(self) -> None:
        d = state_dir(self.name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "lab.json").write_text(
            json.dumps({"name": self.name, "mgmt": self.mgmt_prefix, "dataplane": self.dataplane,
                        "nodes": {n: i.to_json() for n, i in self.nodes.items()}}, indent=2)
        )


def load_lab_state(lab: str) -> dict[str, Any] | None:
    p = state_dir(lab) / "lab.json"
    if not p.exists():
        return None
    data: dict[str, Any] = json.loads(p.read_text())
    return data


# --- building -----------------------------------------------------------------------------
def _pick_mgmt_prefix(lab: str) -> ipaddress.IPv4Network:
    ipr = netlink.open_ipr()
    try:
        used = {ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
                for a in ipr.get_addr(family=2)}
    finally:
        ipr.close()
    subnets: list[ipaddress.IPv4Network] = list(MGMT_BASE.subnets(new_prefix=24))
    start = zlib.crc32(lab.encode()) % len(subnets)
    for i in range(len(subnets)):
        cand = subnets[(start + i) % len(subnets)]
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise LabError("no free management subnet in 198.18.0.0/15")


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int | None = None) -> None:
    with netlink.open_ipr(ns_a) as ipr:
        netlink.create_veth(ipr, name_a, name_b, peer_netns=ns_b)
        netlink.link_up(ipr, name_a, mtu=mtu)
    with netlink.open_ipr(ns_b) as ipr:
        netlink.link_up(ipr, name_b, mtu=mtu)


def build(topo: Topology, progress: Progress = _noop) -> Lab:
    """Create namespaces, links, addresses and routes (no daemons yet)."""
    lab = Lab(topo)
    existing = [n for n in netlink.list_namespaces() if n.startswith(f"{topo.name}-")]
    if existing:
        raise LabError(f"lab {topo.name!r} already exists ({len(existing)} namespaces); `lispnet lab down {topo.name}` first")
    mgmt = _pick_mgmt_prefix(topo.name)
    lab.mgmt_prefix = str(mgmt)
    mgmt_hosts = mgmt.hosts()
    root_mgmt = next(mgmt_hosts)
    ul = topo.underlay_ns
    all_ns = [ul] + [topo.namespace(n) for n in topo.node_names()]
    progress(f"creating {len(all_ns)} namespaces")
    sysctl_base = {
        "net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0,
        "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0,
    }
    for ns in all_ns:
        netlink.create_namespace(ns)
        with netlink.open_ipr(ns) as ipr:
            netlink.link_up(ipr, "lo")
        extra: dict[str, str | int] = dict(sysctl_base)
        if ns != ul and not any(ns == topo.namespace(h.name) for h in topo.hosts):
            extra.update({"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1})
        ns_sysctls(ns, extra)
    with netlink.open_ipr(ul) as ipr:
        netlink.create_bridge(ipr, "ul")
        netlink.create_bridge(ipr, "mg")
        netlink.link_up(ipr, "ul", mtu=topo.mtu)
    # the root namespace reaches the management bridge
    root_link = mgmt_link_name(topo.name)
    with netlink.open_ipr() as ipr:
        netlink.create_veth(ipr, root_link, "mg-root", peer_netns=ul)
        netlink.link_up(ipr, root_link)
        netlink.add_address(ipr, root_link, f"{root_mgmt}/{mgmt.prefixlen}")
    with netlink.open_ipr(ul) as ipr:
        netlink.set_master(ipr, "mg-root", "mg")
        netlink.link_up(ipr, "mg-root")
    plen4 = topo.underlay_prefixlen(4)
    try:
        plen6: int | None = topo.underlay_prefixlen(6)
    except ValueError:
        plen6 = None
    progress("wiring the underlay")
    for r in topo.routers:
        ns = topo.namespace(r.name)
        _veth(ns, "ul0", ul, f"u-{r.name}", mtu=topo.mtu)
        _veth(ns, "mg0", ul, f"m-{r.name}")
        with netlink.open_ipr(ul) as ipr:
            netlink.set_master(ipr, f"u-{r.name}", "ul")
            netlink.set_master(ipr, f"m-{r.name}", "mg")
        addr_mgmt = next(mgmt_hosts)
        info = NodeInfo(r.name, r.kind, ns, api=f"http://{addr_mgmt}:{topo.api_port}")
        with netlink.open_ipr(ns) as ipr:
            netlink.add_address(ipr, "mg0", f"{addr_mgmt}/{mgmt.prefixlen}")
            for rloc in r.rlocs:
                plen = plen4 if ipaddress.ip_address(rloc).version == 4 else plen6
                netlink.add_address(ipr, "ul0", f"{rloc}/{plen}")
                info.addresses.append(rloc)
        lab.nodes[r.name] = info
    progress("wiring the sites")
    for h in topo.hosts:
        router = topo.router(h.router)
        lan = next(x for x in router.lans if x.name == h.lan)
        rns, hns = topo.namespace(router.name), topo.namespace(h.name)
        with netlink.open_ipr(rns) as ipr:
            exists = netlink.link_index(ipr, lan.name) is not None
        if exists:
            raise LabError(f"lan {lan.name} of {router.name} has more than one host (use one host per lan)")
        _veth(rns, lan.name, hns, "eth0")
        with netlink.open_ipr(rns) as ipr:
            for cidr in lan.addresses:
                # the xTR routes each instance in a table of its own: no connected route in main
                netlink.add_address(ipr, lan.name, cidr, noprefixroute=True)
        info = NodeInfo(h.name, "host", hns)
        with netlink.open_ipr(hns) as ipr:
            for cidr in h.addresses:
                netlink.add_address(ipr, "eth0", cidr)
                info.addresses.append(cidr.split("/")[0])
            for gw in lan.addresses:
                ip = ipaddress.ip_interface(gw).ip
                if any(ipaddress.ip_interface(c).version == ip.version for c in h.addresses):
                    netlink.replace_route(ipr, "default", gateway=str(ip))
        lab.nodes[h.name] = info
    return lab


def start_daemons(lab: Lab, dataplane: str = "tun", progress: Progress = _noop) -> None:
    topo = lab.topology
    lab.dataplane = dataplane
    d = state_dir(topo.name)
    d.mkdir(parents=True, exist_ok=True)
    order = sorted(topo.routers, key=lambda r: r.kind != "msmr")  # the mapping system first
    for r in order:
        info = lab.nodes[r.name]
        assert info.api is not None
        listen = info.api.removeprefix("http://")
        cfg_path = d / f"{r.name}.toml"
        cfg_path.write_text(to_toml(node_config(topo, r, listen, dataplane)))
        log_path = d / f"{r.name}.log"
        with open(log_path, "ab") as logf:
            proc = ns_popen(
                info.namespace,
                [sys.executable, "-m", "lispnet", "run", str(cfg_path)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        info.pid, info.config, info.log = proc.pid, str(cfg_path), str(log_path)
        progress(f"started {r.name} ({r.kind}) pid {proc.pid}")
    lab.save()


def _tail(path: str | None, lines: int = 15) -> str:
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _get_json(url: str, timeout: float = 2.0) -> Any:
    import httpx

    r = httpx.get(url, timeout=timeout)
    r.raise_for_status()
    return r.json()


def wait_ready(lab: Lab, timeout: float = 60.0, progress: Progress = _noop) -> None:
    """Every daemon answers on its API and every ETR is registered with the Map-Server."""
    deadline = time.monotonic() + timeout
    routers = [lab.nodes[r.name] for r in lab.topology.routers]
    for info in routers:
        while True:
            if info.pid is not None and not _alive(info.pid):
                raise LabError(f"{info.name} exited:\n{_tail(info.log)}")
            try:
                _get_json(info.api or "")
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise LabError(f"{info.name}: API {info.api} not answering; see {info.log}") from None
                time.sleep(0.1)
        progress(f"{info.name} API up")
    xtrs = [lab.nodes[r.name] for r in lab.topology.routers if r.kind == "xtr"]
    pending = {x.name for x in xtrs}
    while pending:
        for x in xtrs:
            if x.name not in pending:
                continue
            try:
                regs = _get_json(f"{x.api}/xtr/registrations")
            except Exception:  # noqa: BLE001
                regs = []
            if regs and all(r.get("registered") for r in regs):
                pending.discard(x.name)
                progress(f"{x.name} registered")
        if pending:
            if time.monotonic() > deadline:
                raise LabError(f"not registered in time: {', '.join(sorted(pending))}")
            time.sleep(0.1)
    # the Map-Server's own view, when it publishes one
    msmr = next(lab.nodes[r.name] for r in lab.topology.routers if r.kind == "msmr")
    while True:
        try:
            regs = _get_json(f"{msmr.api}/registrations")
        except Exception:  # noqa: BLE001 - the MS may not offer the resource
            break
        text = json.dumps(regs)
        wanted = [p for r in lab.topology.routers if r.kind == "xtr" for lan in r.lans for p in lan.eid_prefixes]
        if all(p in text for p in wanted):
            progress("map-server lists every site registration")
            break
        if time.monotonic() > deadline:
            raise LabError("the map-server does not list every registration")
        time.sleep(0.1)


def up(topo: Topology, dataplane: str = "tun", progress: Progress = _noop, timeout: float = 60.0) -> Lab:
    """Build the lab, start the daemons, wait until ready; tear down on failure."""
    try:
        lab = build(topo, progress)
        lab.save()
        start_daemons(lab, dataplane, progress)
        wait_ready(lab, timeout, progress)
        return lab
    except BaseException:
        down(topo.name)
        raise


def down(lab_name: str, progress: Progress = _noop) -> list[str]:
    """Remove everything of lab ``lab_name``; returns the namespaces removed."""
    namespaces = [n for n in netlink.list_namespaces() if n.startswith(f"{lab_name}-")]
    pids: list[int] = []
    state = load_lab_state(lab_name)
    if state:
        pids += [int(n["pid"]) for n in state.get("nodes", {}).values() if n.get("pid")]
    for ns in namespaces:
        pids += pids_in_namespace(ns)
    pids = sorted({p for p in pids if p != os.getpid() and _alive(p)})
    if pids:
        progress(f"stopping {len(pids)} processes")
        _terminate(pids)
    for ns in namespaces:
        try:
            netlink.remove_namespace(ns)
        except Exception as e:  # noqa: BLE001
            progress(f"cannot remove {ns}: {e}")
    with netlink.open_ipr() as ipr:
        try:
            netlink.delete_link(ipr, mgmt_link_name(lab_name))
        except Exception:  # noqa: BLE001 - gone with the namespace peer
            pass
    shutil.rmtree(state_dir(lab_name), ignore_errors=True)
    progress(f"removed {len(namespaces)} namespaces")
    return namespaces


def running_labs() -> list[str]:
    labs = set()
    for ns in netlink.list_namespaces():
        if ns.endswith("-ul"):
            labs.add(ns[: -len("-ul")])
    return sorted(labs)


def attach(topo: Topology) -> Lab:
    """A :class:`Lab` for an already running lab (from its state file)."""
    state = load_lab_state(topo.name)
    lab = Lab(topo)
    if state:
        lab.mgmt_prefix = state.get("mgmt", "")
        lab.dataplane = state.get("dataplane", "tun")
        for n, d in state.get("nodes", {}).items():
            lab.nodes[n] = NodeInfo(d["name"], d["kind"], d["namespace"], d.get("addresses", []), d.get("api"),
                                    d.get("pid"), d.get("config"), d.get("log"))
    return lab


__all__ = [
    "Lab", "LabError", "NodeInfo", "attach", "build", "down", "load_lab_state", "ns_popen", "ns_run",
    "pids_in_namespace", "running_labs", "start_daemons", "up", "wait_ready",
]
