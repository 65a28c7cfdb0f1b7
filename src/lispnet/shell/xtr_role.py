"""The xTR roles (ITR, ETR, PITR, PETR and their combinations) inside ``lispnet run``.

One factory builds, from the node config:

* an :class:`~lispnet.core.itr.ItrEngine` for ``itr``/``xtr`` (or a PITR with the p bit for
  ``pitr``/``pxtr`` without ``itr``/``xtr``), fed by the data plane's misses;
* an :class:`~lispnet.core.etr.EtrEngine` for ``etr``/``xtr``/``pxtr``/``petr`` when the
  node has database-mappings, registering with every ``[[map-server]]``;
* the forwarding backend named by ``node.dataplane`` (``tun`` here; ``ebpf``, ``vxlan``,
  ``vxlan-gpe`` from their modules when they load, otherwise TUN with a log line).

Control datagrams reach the engines through the daemon's dispatch: Map-Replies to the
ITR, Map-Notifies and ECM'd Map-Requests to the ETR; a plain Map-Request is an SMR (ITR)
or an RLOC-probe (ETR), told apart by its S bit.  Engine events drive the data plane:
``MappingInstalled`` -> ``install``, ``MappingRemoved`` -> ``remove``, ``PacketsReleased``
-> re-inject the packets that waited for their mapping.

REST resources: ``GET /map-cache``, ``GET /database-mapping``, ``GET /xtr/registrations``,
``GET /xtr/stats``; the role's counters also appear in ``GET /stats`` under ``xtr``.
"""

from __future__ import annotations

import logging
from ipaddress import ip_interface
from typing import Any

from ..config.model import NodeConfig
from ..core.engine import Endpoint, Event, Send
from ..core.etr import (
    DatabaseMapping,
    EtrConfig,
    EtrEngine,
    EtrRegistered,
    EtrRegistrationLost,
    MapServerPeer,
)
from ..core.itr import (
    ItrConfig,
    ItrEngine,
    MappingInstalled,
    MappingRemoved,
    PacketsReleased,
    ResolutionFailed,
)
from ..dataplane.base import Dataplane, IPAddr, Miss
from ..db.map_cache import MapCacheEntry
from ..wire.records import LocatorRecord
from . import udp
from .roles import RoleContext, RoleRuntime, register_role

log = logging.getLogger("lispnet.xtr")

ITR_ROLES = frozenset({"itr", "xtr"})
PITR_ROLES = frozenset({"pitr", "pxtr"})
ETR_ROLES = frozenset({"etr", "xtr", "petr", "pxtr"})
ALL_ROLES = ("itr", "etr", "xtr", "pitr", "petr", "pxtr")

class _ControlDemux:
    """Split one dispatch key between the ITR and the ETR (SMR vs. RLOC-probe)."""

    def __init__(self, itr: ItrEngine | None, etr: EtrEngine | None) -> None:
        self.itr = itr
        self.etr = etr

    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        smr = len(datagram) > 1 and bool(datagram[0] & 0x01)  # Map-Request S bit
        target: Any = self.itr if (smr and self.itr is not None) or self.etr is None else self.etr
        if target is not None:
            target.receive(datagram, src, dst, now)

    def poll_sends(self, now: float) -> list[Send]:
        return []

    def poll_events(self) -> list[Event]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        return None


def local_rlocs(config: NodeConfig) -> list[IPAddr]:
    """``node.rlocs`` plus the global addresses of ``node.rloc-interfaces``."""
    rlocs: list[IPAddr] = list(config.node.rlocs)
    if config.node.rloc_interfaces:
        from ..dataplane import netlink

        def read() -> list[str]:
            with netlink.open_ipr() as ipr:
                return [c for ifname in config.node.rloc_interfaces for c in netlink.addresses(ipr, ifname)]

        for cidr in netlink.in_thread(read):
            addr = ip_interface(cidr).ip
            if addr not in rlocs:
                rlocs.append(addr)
    return rlocs


def make_dataplane(name: str, logger: logging.Logger, rloc_ifaces: list[str] | None = None,
                   tunnel_offload: bool = True, udp_offload: bool = True, lan_gro: bool = True,
                   lan_batch_us: int = 20) -> Dataplane | None:
    """The backend called ``name`` (``dataplane.select``); unavailable ones fall back to TUN.

    ``rloc_ifaces``: the RLOC-facing interfaces (kernel backends decapsulate there);
    None lets the backend find the interfaces holding the local RLOCs.  The EID-facing
    interfaces are the ``[[instance]]`` interfaces, given through ``set_instances``.
    ``tunnel_offload``: the TUN backend may use UDP-tunnel GSO when the kernel has it;
    ``udp_offload``: UDP super-packets from the LANs (``tun_uso``); ``lan_gro`` /
    ``lan_batch_us``: GRO on the LAN interfaces (``lan_gro``).
    """
    if name == "none":
        return None
    from ..dataplane.select import KINDS
    from ..dataplane.select import make_dataplane as select_backend

    if name not in KINDS:
        logger.warning("unknown dataplane %r: falling back to tun", name)
        name = "tun"
    tun_kwargs: dict[str, Any] = {"udp_offload": udp_offload, "lan_gro": lan_gro, "lan_batch_us": lan_batch_us}
    if not tunnel_offload:
        tun_kwargs["tunnel_offload"] = False
    return select_backend(name, rloc_ifaces=rloc_ifaces, tun_kwargs=tun_kwargs, lan_gro=lan_gro,
                          lan_batch_us=lan_batch_us)


UDP_NO_CHECK6_RX = 102


def accept_zero_udp6_checksums(dp: Dataplane) -> None:
    """RFC 9300 section 5.3: an ETR MUST accept LISP packets with a zero UDP checksum,
    which ITRs SHOULD send, also over IPv6 (RFC 6935/6936; the eBPF ITR does).  Linux
    drops them on a UDP6 socket unless ``UDP_NO_CHECK6_RX`` is set, so set it on a
    user-space backend's receive sockets.  (The TUN backend's ``_open_rx`` sets it too;
    this covers any other user-space backend.)"""
    import socket

    for sock in list(getattr(dp, "_rx", {}).values()):
        if isinstance(sock, socket.socket) and sock.family == socket.AF_INET6:
            try:
                sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)
            except OSError:
                pass


def cache_entry_view(e: MapCacheEntry, now: float) -> dict[str, Any]:
    return {
        "eid-prefix": f"{e.prefix.address}/{e.prefix.mask_len}",
        "instance-id": e.prefix.iid,
        "negative": e.is_negative,
        "action": e.action.name.lower().replace("_", "-"),
        "ttl": e.ttl_minutes,
        "expires-in": round(max(0.0, e.expires_at - now), 1),
        "uptime": round(now - e.installed_at, 1),
        "authoritative": e.authoritative,
        "source": e.source,
        "packets": e.packets,
        "rlocs": [
            {
                "address": str(c.record.address),
                "priority": c.record.priority,
                "weight": c.record.weight,
                "up": c.up,
            }
            for c in e.locators
        ],
    }


@register_role(*ALL_ROLES)
async def build_xtr(ctx: RoleContext) -> RoleRuntime:
    cfg = ctx.config
    roles = cfg.roles
    xopt = cfg.xtr
    rlocs = local_rlocs(cfg)
    logger = ctx.logger

    def nonce() -> int:
        return ctx.rng.getrandbits(64)

    itr: ItrEngine | None = None
    if roles & (ITR_ROLES | PITR_ROLES):
        itr = ItrEngine(
            ItrConfig(
                map_resolvers=tuple(mr.address for mr in cfg.map_resolver),
                itr_rlocs=tuple(rlocs),
                petrs=tuple(p.address for p in sorted(cfg.proxy_etr, key=lambda p: p.priority)),
                pitr=not (roles & ITR_ROLES),
                max_entries=xopt.map_cache_size,
                request_timeout_s=xopt.map_request_timeout,
                max_attempts=xopt.map_request_retries + 1,
            ),
            nonce,
        )
    etr: EtrEngine | None = None
    if roles & ETR_ROLES and cfg.database_mapping:
        etr = EtrEngine(
            EtrConfig(
                mappings=tuple(
                    DatabaseMapping(
                        dm.prefix,
                        tuple(LocatorRecord(loc.address, loc.priority, loc.weight, loc.m_priority, loc.m_weight)
                              for loc in dm.rlocs),
                        dm.ttl,
                    )
                    for dm in cfg.database_mapping
                ),
                map_servers=tuple(
                    MapServerPeer(ms.address, (ms.key or "").encode(), ms.key_id, ms.alg_id, ms.proxy_reply)
                    for ms in cfg.map_server
                ),
                rlocs=tuple(rlocs),
                register_interval_s=xopt.register_interval,
                merge=any(ms.merge for ms in cfg.map_server),
            ),
            nonce,
            now=ctx.clock(),
        )

    dp = make_dataplane(cfg.node.dataplane, logger, list(cfg.node.rloc_interfaces) or None,
                        cfg.node.tun_tunnel_offload, cfg.node.tun_udp_offload, cfg.node.lan_gro,
                        cfg.node.lan_batch_us)
    instances = {i.instance_id: i.interface for i in cfg.instance} or {0: ""}

    def on_miss(miss: Miss) -> None:
        if itr is None:
            return
        itr.handle_miss(miss.iid, miss.src, miss.dst, miss.packet, ctx.clock())
        ctx.kick()

    def on_lsb(iid: int, source_eid: IPAddr, lsb: int) -> None:
        if itr is not None and itr.apply_lsb(iid, source_eid, lsb, ctx.clock()):
            ctx.kick()

    if dp is not None:
        lsb = etr.lsb() if etr is not None else 1
        dp.set_local_rlocs(rlocs, lsb)
        dp.set_instances(instances)
        if hasattr(dp, "on_lsb"):
            dp.on_lsb = on_lsb
        dp.start(on_miss)
        accept_zero_udp6_checksums(dp)
        logger.info("xTR data plane %s up: instances %s, RLOCs %s", dp.name, instances, [str(r) for r in rlocs])

    def on_event(ev: Event) -> None:
        if isinstance(ev, MappingInstalled) and dp is not None:
            dp.install(ev.entry)
        elif isinstance(ev, MappingRemoved) and dp is not None:
            dp.remove(ev.prefix)
        elif isinstance(ev, PacketsReleased) and dp is not None:
            inject = getattr(dp, "inject", None)
            if inject is not None:
                for pkt in ev.packets:
                    inject(ev.iid, pkt)
        elif isinstance(ev, EtrRegistered):
            logger.info("registered with map-server %s (%d records)", ev.map_server, ev.records)
        elif isinstance(ev, EtrRegistrationLost):
            logger.warning("registration with map-server %s lost", ev.map_server)
        elif isinstance(ev, ResolutionFailed):
            ctx.ratelog.warning(("resolution", str(ev.eid)), "no mapping for %s (%d packets dropped)", ev.eid, ev.dropped)

    def stats() -> dict[str, Any]:
        out: dict[str, Any] = {"dataplane": dp.name if dp is not None else "none"}
        if itr is not None:
            out["itr"] = dict(itr.counters)
            out["map-cache"] = {
                "entries": len(itr.map_cache),
                "evictions": itr.map_cache.evictions,
                "expirations": itr.map_cache.expirations,
            }
        if etr is not None:
            out["etr"] = dict(etr.counters)
        if dp is not None:
            out["forwarding"] = dp.stats()
        return out

    from fastapi import APIRouter

    router = APIRouter(tags=["xtr"])

    @router.get("/map-cache", summary="ITR map-cache")
    async def get_map_cache(iid: int | None = None) -> list[dict[str, Any]]:
        if itr is None:
            return []
        now = ctx.clock()
        return [cache_entry_view(e, now) for e in itr.map_cache if iid is None or e.prefix.iid == iid]

    @router.get("/database-mapping", summary="ETR database-mappings")
    async def get_database_mapping() -> list[dict[str, Any]]:
        if etr is None:
            return []
        return [
            {
                "eid-prefix": f"{m.prefix.address}/{m.prefix.mask_len}",
                "instance-id": m.prefix.iid,
                "ttl": m.ttl_minutes,
                "rlocs": [{"address": str(loc.address), "priority": loc.priority, "weight": loc.weight}
                          for loc in m.locators],
            }
            for m in etr.mappings
        ]

    @router.get("/xtr/registrations", summary="ETR registration state per Map-Server")
    async def get_registrations() -> list[dict[str, Any]]:
        return etr.registration_status() if etr is not None else []

    @router.get("/xtr/stats", summary="xTR forwarding and control counters")
    async def get_xtr_stats() -> dict[str, Any]:
        return stats()

    @router.get("/xtr/pending", summary="ITR Map-Requests in progress")
    async def get_pending() -> list[dict[str, object]]:
        return itr.pending_requests() if itr is not None else []

    handlers: dict[str, Any] = {}
    demux = _ControlDemux(itr, etr)
    if itr is not None:
        handlers[udp.MAP_REPLY] = itr
    if etr is not None:
        handlers[udp.MAP_NOTIFY] = etr
        handlers[udp.ECM_TO_ETR] = etr
    if itr is not None or etr is not None:
        handlers[udp.MAP_REQUEST] = demux
    engines: list[Any] = [e for e in (itr, etr) if e is not None]

    def stop() -> None:
        if dp is not None:
            dp.stop()

    covers = frozenset(roles & set(ALL_ROLES))
    return RoleRuntime(
        name="xtr",
        covers=covers,
        handlers=handlers,
        engines=engines,
        routers=[router],
        services={k: v for k, v in (("itr", itr), ("etr", etr), ("dataplane", dp)) if v is not None},
        stats=stats,
        on_event=on_event,
        stop=stop,
    )


__all__ = ["build_xtr", "make_dataplane", "local_rlocs"]
