"""Lab topology files: routers (MS/MR, xTRs, PxTRs) on an RLOC underlay, hosts behind them.

A topology is one TOML file (see ``topologies/demo.toml``)::

    [lab]      name, underlay prefixes, the sites' shared key, underlay MTU
    [[router]] name, kind = "msmr" | "xtr" | "pxtr", rlocs, rloc-priorities,
               dataplane, [[router.lan]] (name, instance-id, addresses, eid-prefixes)
    [[host]]   name, router, lan, addresses (default routes point at the router's LAN)

From it :func:`node_config` derives each router's ``lispnet run`` node file: the MS/MR
gets one site per xTR with the EID prefixes of its LANs; an xTR gets its
database-mappings (every LAN prefix, every RLOC), the Map-Server/Map-Resolver and the
PxTRs as PETRs; a PxTR gets the PITR + PETR roles.  Every name on the host derives from the
lab name (namespaces ``LAB-NODE``), so two labs with different names never collide.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

KINDS = ("msmr", "xtr", "pxtr")


class TopologyError(ValueError):
    """A topology file that cannot be built (names the key and the reason)."""


@dataclass(frozen=True, slots=True)
class Lan:
    """An EID-side interface of a router, bound to one instance-id."""

    name: str
    instance_id: int
    addresses: tuple[str, ...]
    """CIDRs on the router side (the hosts' gateway)."""
    eid_prefixes: tuple[str, ...]
    """EID prefixes registered for this LAN (default: the networks of ``addresses``)."""


@dataclass(frozen=True, slots=True)
class Router:
    name: str
    kind: str
    rlocs: tuple[str, ...]
    rloc_priorities: tuple[int, ...]
    lans: tuple[Lan, ...] = ()
    dataplane: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    router: str
    lan: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    underlay: tuple[str, ...]
    key: str
    routers: tuple[Router, ...]
    hosts: tuple[Host, ...]
    mtu: int = 1600
    api_port: int = 8080
    extra: dict[str, Any] = field(default_factory=dict)

    def router(self, name: str) -> Router:
        for r in self.routers:
            if r.name == name:
                return r
        raise KeyError(name)

    def namespace(self, node: str) -> str:
        return f"{self.name}-{node}"

    @property
    def underlay_ns(self) -> str:
        return f"{self.name}-ul"

    def node_names(self) -> list[str]:
        return [r.name for r in self.routers] + [h.name for h in self.hosts]

    def underlay_prefixlen(self, version: int) -> int:
        for net in self.underlay:
            n = ipaddress.ip_network(net, strict=False)
            if n.version == version:
                return n.prefixlen
        raise TopologyError(f"lab.underlay has no IPv{version} prefix")

    def with_name(self, name: str) -> Topology:
        return Topology(name, self.underlay, self.key, self.routers, self.hosts, self.mtu, self.api_port, self.extra)

    def with_dataplanes(self, per_node: dict[str, str]) -> Topology:
        """This topology with ``dataplane`` set on the named routers (``{"xtr2": "tun"}``)."""
        unknown = set(per_node) - {r.name for r in self.routers}
        if unknown:
            raise TopologyError(f"no router {', '.join(sorted(unknown))}")
        routers = tuple(dataclasses.replace(r, dataplane=per_node.get(r.name, r.dataplane)) for r in self.routers)
        return dataclasses.replace(self, routers=routers)


def _req(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise TopologyError(f"{where}.{key}: missing")
    return d[key]


def parse_topology(data: dict[str, Any]) -> Topology:
    lab = data.get("lab", {})
    name = str(_req(lab, "name", "lab"))
    if not name.replace("-", "").isalnum() or len(name) > 20:
        raise TopologyError("lab.name: letters, digits and '-' only, at most 20 characters")
    routers: list[Router] = []
    for i, r in enumerate(data.get("router", [])):
        where = f"router[{i}]"
        kind = str(_req(r, "kind", where))
        if kind not in KINDS:
            raise TopologyError(f"{where}.kind: one of {', '.join(KINDS)}")
        rname = str(_req(r, "name", where))
        if len(rname) > 12 or rname == "ul":
            raise TopologyError(f"{where}.name: at most 12 characters and not 'ul'")
        rlocs = tuple(str(ipaddress.ip_address(a)) for a in _req(r, "rlocs", where))
        prios = tuple(int(p) for p in r.get("rloc-priorities", [1] * len(rlocs)))
        if len(prios) != len(rlocs):
            raise TopologyError(f"{where}.rloc-priorities: one per RLOC")
        lans = []
        for j, lan in enumerate(r.get("lan", [])):
            lw = f"{where}.lan[{j}]"
            addrs = tuple(str(ipaddress.ip_interface(a)) for a in _req(lan, "addresses", lw))
            eids = tuple(lan.get("eid-prefixes", [str(ipaddress.ip_interface(a).network) for a in addrs]))
            lans.append(Lan(str(_req(lan, "name", lw)), int(lan.get("instance-id", 0)), addrs, eids))
        dp = r.get("dataplane")
        if dp is not None and dp not in ("tun", "ebpf", "vxlan-gpe", "vxlan"):
            raise TopologyError(f"{where}.dataplane: one of tun, ebpf, vxlan-gpe, vxlan")
        routers.append(Router(rname, kind, rlocs, prios, tuple(lans), dp))
    hosts = []
    names = {r.name for r in routers}
    for i, h in enumerate(data.get("host", [])):
        where = f"host[{i}]"
        hname = str(_req(h, "name", where))
        if hname in names:
            raise TopologyError(f"{where}.name: {hname!r} is used twice")
        names.add(hname)
        router = str(_req(h, "router", where))
        if router not in {r.name for r in routers}:
            raise TopologyError(f"{where}.router: no router {router!r}")
        lan = str(_req(h, "lan", where))
        if lan not in {x.name for r in routers if r.name == router for x in r.lans}:
            raise TopologyError(f"{where}.lan: router {router!r} has no lan {lan!r}")
        addrs = tuple(str(ipaddress.ip_interface(a)) for a in _req(h, "addresses", where))
        hosts.append(Host(hname, router, lan, addrs))
    if len({r.name for r in routers}) != len(routers):
        raise TopologyError("router names must be unique")
    if not any(r.kind == "msmr" for r in routers):
        raise TopologyError("the topology needs one router of kind 'msmr'")
    return Topology(
        name=name,
        underlay=tuple(str(ipaddress.ip_network(n, strict=False)) for n in lab.get("underlay", ["10.255.0.0/24"])),
        key=str(lab.get("key", "lispnet-lab-key")),
        routers=tuple(routers),
        hosts=tuple(hosts),
        mtu=int(lab.get("mtu", 1600)),
        api_port=int(lab.get("api-port", 8080)),
    )


def parse_dataplanes(spec: str) -> tuple[str, dict[str, str]]:
    """``ebpf`` or ``xtr1=ebpf,xtr2=tun`` or ``ebpf,xtr2=tun`` -> (default, per-router)."""
    from ..dataplane.select import KINDS

    default = "tun"
    per_node: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        node, _, kind = part.rpartition("=")
        if kind not in KINDS:
            raise TopologyError(f"dataplane {kind!r}: one of {', '.join(KINDS)}")
        if node:
            per_node[node] = kind
        else:
            default = kind
    return default, per_node


def load_topology(path_or_name: str) -> Topology:
    """A topology file, or the name of a built-in one (``demo``)."""
    p = Path(path_or_name)
    if p.exists():
        text = p.read_text()
    else:
        try:
            text = resources.files("lispnet.lab.topologies").joinpath(f"{path_or_name}.toml").read_text()
        except FileNotFoundError:
            raise TopologyError(f"no topology file or built-in topology {path_or_name!r}") from None
    try:
        return parse_topology(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{path_or_name}: {e}") from None


# --- node files -------------------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(doc: dict[str, Any]) -> str:
    """A tiny TOML writer for node files (tables and arrays of tables of scalars)."""
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
            lines.append("")
        elif isinstance(value, list):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
                lines.append("")
    return "\n".join(lines)


def node_config(topo: Topology, router: Router, api: str, dataplane: str = "tun") -> dict[str, Any]:
    """The ``lispnet run`` node document for ``router``."""
    msmr = next(r for r in topo.routers if r.kind == "msmr")
    ms_v4 = next((a for a in msmr.rlocs if ipaddress.ip_address(a).version == 4), msmr.rlocs[0])
    doc: dict[str, Any] = {}
    if router.kind == "msmr":
        doc["node"] = {"name": router.name, "roles": ["map-server", "map-resolver"], "api": api, "log-level": "info"}
        doc["site"] = [
            {
                "name": r.name,
                "authentication-keys": [{"key-id": 0, "algorithm": "hmac-sha-256", "key": topo.key}],
                "eid-prefixes": [
                    {"prefix": p, "instance-id": lan.instance_id} for lan in r.lans for p in lan.eid_prefixes
                ],
            }
            for r in topo.routers
            if r.kind == "xtr"
        ]
        return doc
    roles = ["xtr"] if router.kind == "xtr" else ["pxtr"]
    doc["node"] = {
        "name": router.name,
        "roles": roles,
        "api": api,
        "rlocs": list(router.rlocs),
        "dataplane": router.dataplane or dataplane,
        "log-level": "info",
    }
    doc["map-resolver"] = [{"address": ms_v4}]
    if router.kind == "xtr":
        doc["map-server"] = [{"address": ms_v4, "key": topo.key, "key-id": 0, "algorithm": "hmac-sha-256"}]
        locs = [{"address": a, "priority": p, "weight": 100} for a, p in zip(router.rlocs, router.rloc_priorities, strict=True)]
        doc["database-mapping"] = [
            {"eid-prefix": p, "instance-id": lan.instance_id, "rlocs": locs} for lan in router.lans for p in lan.eid_prefixes
        ]
        petrs = [r for r in topo.routers if r.kind == "pxtr"]
        doc["proxy-etr"] = [
            {"address": next((a for a in r.rlocs if ipaddress.ip_address(a).version == 4), r.rlocs[0])} for r in petrs
        ]
    doc["instance"] = [{"instance-id": lan.instance_id, "interface": lan.name} for lan in router.lans]
    return doc


__all__ = [
    "Host", "Lan", "Router", "Topology", "TopologyError", "load_topology", "node_config", "parse_dataplanes",
    "parse_topology", "to_toml",
]
