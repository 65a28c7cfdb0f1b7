"""The mapping-system roles in the daemon: ``map-server`` and ``map-resolver``.

Builds the sans-I/O :class:`~lispnet.core.map_server.MapServer` from the node file
(sites, static mappings, options) and, when present, the Map-Resolver engine; claims
their message types; logs registrations, expiries and (rate-limited) rejections from the
engine's events; exports Prometheus metrics; serves the REST resources through
:class:`MappingService` (``api/mapping.py`` holds the HTTP side).

Config, API and state file
--------------------------
The node file is the base.  Sites and static mappings written through the API form an
*overlay* (replacements and deletions, by site name / EID prefix) that is saved in the
state file and re-applied on top of the file at the next start, so API changes survive
restarts.  On SIGHUP the file is re-read and diffed against the previous file: a site
(or static mapping) changed, added or removed *in the file* is applied and its overlay
entry dropped (the file edit is the newer intent); everything else keeps its API state.

Times: the engine works in ``loop.time()`` seconds; views convert the time fields to
Unix time for people (``first-registered``, ``last-registered``, ``expires-at``,
``last-time``) and add ``expires-in``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config.model import NodeConfig, Site, StaticMapping
from ..core.engine import Endpoint, Engine, Event
from ..core.map_resolver import MapResolver, MapResolverConfig, MapServerPeer
from ..core.map_server import (
    MapServer,
    MapServerConfig,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationWithdrawn,
    SiteChanged,
    SiteRegistered,
)
from ..core.ratelimit import TokenBucketLimiter
from ..db.sites import SitePolicy
from ..wire.prefix import EidPrefix
from . import udp
from .roles import RoleContext, RoleRuntime, register_role

log = logging.getLogger("lispnet.mapping")

TIME_FIELDS = ("first-registered", "last-registered", "expires-at", "last-time")


def ms_config(cfg: NodeConfig) -> MapServerConfig:
    mso, mro = cfg.map_server_options, cfg.map_resolver_options
    return MapServerConfig(
        registration_timeout_s=mso.registration_timeout,
        max_registrations=mso.max_registrations,
        proxy_reply_ttl=mso.proxy_reply_ttl,
        negative_ttl=mro.negative_ttl,
        unregistered_ttl=mro.unregistered_ttl,
        negative_action=mro.negative_action_code,
        map_request_rate=float(mro.map_request_rate_limit),
        accept_plain_requests=mro.accept_plain_requests,
    )


def site_policy(site: Site) -> SitePolicy:
    return SitePolicy.from_dict(site.to_toml_dict())


def static_key(m: StaticMapping | Mapping[str, Any]) -> str:
    if isinstance(m, StaticMapping):
        return str(m.prefix)
    return str(EidPrefix.parse(str(m["eid-prefix"]), int(m.get("instance-id", 0))))


class MappingService:
    """What the REST API calls: the Map-Server's service methods plus the overlay
    bookkeeping, wall-clock views, state-file and kick notifications."""

    def __init__(self, ms: MapServer | None, mr: MapResolver | None, ctx: RoleContext) -> None:
        self._ms = ms
        self.mr = mr
        self.ctx = ctx
        self.overlay_sites: dict[str, dict[str, Any] | None] = {}
        """API-written sites by name (None = deleted through the API)."""
        self.overlay_static: dict[str, dict[str, Any] | None] = {}
        """API-written static mappings by prefix text (None = deleted)."""
        self.offload: Any = None
        """``shell.mapreq_offload.MapRequestOffload`` when the kernel answers requests."""

    @property
    def ms(self) -> MapServer:
        """The Map-Server (the API routes that need it exist only on map-server nodes)."""
        if self._ms is None:
            raise LookupError("this node is not a map-server")
        return self._ms

    # --- views ---------------------------------------------------------------------
    def _walltime(self, data: Any, now: float, wall: float) -> Any:
        if isinstance(data, dict):
            out: dict[str, Any] = {}
            for k, v in data.items():
                if k in TIME_FIELDS and isinstance(v, int | float) and not isinstance(v, bool):
                    out[k] = None if math.isinf(v) else wall - (now - float(v))
                else:
                    out[k] = self._walltime(v, now, wall)
            return out
        if isinstance(data, list):
            return [self._walltime(v, now, wall) for v in data]
        return data

    def _view(self, data: Any) -> Any:
        return self._walltime(data, self.ctx.clock(), self.ctx.wall())

    def list_sites(self) -> list[dict[str, Any]]:
        return [self._site_summary(s) for s in self.ms.list_sites()]

    @staticmethod
    def _site_summary(s: dict[str, Any]) -> dict[str, Any]:
        d = dict(s)
        rej = d.pop("rejections", [])
        d["rejected"] = sum(int(r.get("count", 0)) for r in rej)
        d["registered"] = d.get("registered-prefixes", 0)
        return d

    def get_site(self, name: str) -> dict[str, Any] | None:
        s = self.ms.get_site(name)
        if s is None:
            return None
        now = self.ctx.clock()
        view: dict[str, Any] = self._view(
            {
                "site": self._site_summary(s),
                "registrations": self.ms.list_registrations(site=name, now=now),
                "rejections": self.ms.rejections(site=name),
            }
        )
        return view

    def list_registrations(
        self, iid: int | None = None, eid: EidPrefix | None = None, site: str | None = None
    ) -> list[dict[str, Any]]:
        now = self.ctx.clock()
        regs = self.ms.list_registrations(iid=iid, prefix=eid, site=site, now=now)
        if not regs and eid is not None:
            # nothing inside: show the registration covering the EID, if any
            entry = self.ms.registrations.lookup(eid)
            if entry is not None and (site is None or entry.site == site):
                regs = [entry.to_dict(now)]
        return list(self._view(regs))

    def rejections(self, site: str | None = None) -> list[dict[str, Any]]:
        return list(self._view(self.ms.rejections(site)))

    def static_mappings(self) -> list[dict[str, Any]]:
        return self.ms.static_mappings()

    def stats(self) -> dict[str, Any]:
        """Map-Server counters at the top level (when there is one), the Map-Resolver's
        under ``map-resolver``; ``decode-errors`` sums both engines."""
        d: dict[str, Any] = dict(self._ms.stats()) if self._ms is not None else {}
        if self.mr is not None:
            mrs = self.mr.stats()
            d["map-resolver"] = mrs
            total = Counter(d.get("decode-errors", {}))
            total.update(mrs.get("decode-errors", {}))
            d["decode-errors"] = dict(total)
        if self.offload is not None:
            d["map-request-offload"] = self.offload.stats()
        return d

    # --- writes --------------------------------------------------------------------
    def _changed(self) -> None:
        self.ctx.state_changed()
        self.ctx.kick()

    def put_site(self, site: Site) -> bool:
        """Create or replace; returns True when it replaced an existing site."""
        d = site.to_toml_dict()
        replaced = self.ms.add_site(SitePolicy.from_dict(d), replace=True, now=self.ctx.clock())
        self.overlay_sites[site.name] = d
        self._changed()
        return replaced

    def create_site(self, site: Site) -> None:
        if site.name in self.ms.sites:
            raise KeyError(site.name)
        self.put_site(site)

    def delete_site(self, name: str) -> bool:
        if not self.ms.delete_site(name):
            return False
        self.overlay_sites[name] = None
        self._changed()
        return True

    def put_static_mapping(self, m: StaticMapping) -> bool:
        """Create or replace; returns True when it replaced one."""
        existed = any(static_key(x) == static_key(m) for x in self.ms.static_mappings())
        d = m.to_toml_dict()
        self.ms.add_static_mapping(d, now=self.ctx.clock())
        self.overlay_static[static_key(m)] = d
        self._changed()
        return existed

    def delete_static_mapping(self, prefix: EidPrefix) -> bool:
        if not self.ms.delete_static_mapping(prefix.masked()):
            return False
        self.overlay_static[str(prefix.masked())] = None
        self._changed()
        return True

    # --- state file ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "sites": [d for d in self.overlay_sites.values() if d is not None],
            "deleted-sites": sorted(n for n, d in self.overlay_sites.items() if d is None),
            "static-mappings": [d for d in self.overlay_static.values() if d is not None],
            "deleted-static-mappings": sorted(k for k, d in self.overlay_static.items() if d is None),
        }

    def restore(self, data: Any) -> None:
        """Apply a saved overlay on top of the config (validated first, all or nothing)."""
        if not isinstance(data, Mapping):
            raise ValueError("mapping state must be an object")
        sites = [Site.model_validate(d) for d in data.get("sites", ())]
        statics = [StaticMapping.model_validate(d) for d in data.get("static-mappings", ())]
        deleted_sites = [str(n) for n in data.get("deleted-sites", ())]
        deleted_static = [EidPrefix.parse(str(k)) for k in data.get("deleted-static-mappings", ())]
        now = self.ctx.clock()
        for name in deleted_sites:
            self.ms.delete_site(name)
            self.overlay_sites[name] = None
        for s in sites:
            d = s.to_toml_dict()
            self.ms.add_site(SitePolicy.from_dict(d), replace=True, now=now)
            self.overlay_sites[s.name] = d
        for p in deleted_static:
            self.ms.delete_static_mapping(p)
            self.overlay_static[str(p)] = None
        for m in statics:
            d = m.to_toml_dict()
            self.ms.add_static_mapping(d, now=now)
            self.overlay_static[static_key(m)] = d
        log.info(
            "restored from state: %d site(s), %d static mapping(s), %d deletion(s)",
            len(sites), len(statics), len(deleted_sites) + len(deleted_static),
        )

    # --- reload --------------------------------------------------------------------
    def reload(self, old: NodeConfig, new: NodeConfig) -> list[str]:
        notes: list[str] = []
        if self._ms is not None:
            notes += self._reload_ms(self._ms, old, new)
        if self.mr is not None:
            mr_cfg = mr_config(new)
            if mr_cfg != self.mr.config:
                prev = self.mr.config
                self.mr.config = mr_cfg
                self.mr.set_map_servers(mr_cfg.map_servers)
                if (prev.map_request_rate, prev.map_request_burst) != (mr_cfg.map_request_rate, mr_cfg.map_request_burst):
                    self.mr.limiter = _rate_limiter(
                        mr_cfg.map_request_rate, mr_cfg.map_request_burst, mr_cfg.rate_limit_sources
                    )
                notes.append("map-resolver options / map-servers applied")
        return notes

    def _reload_ms(self, ms: MapServer, old: NodeConfig, new: NodeConfig) -> list[str]:
        notes: list[str] = []
        now = self.ctx.clock()
        old_sites = {s.name: s for s in old.site}
        new_sites = {s.name: s for s in new.site}
        for name, s in new_sites.items():
            if old_sites.get(name) != s:
                ms.add_site(site_policy(s), replace=True, now=now)
                self.overlay_sites.pop(name, None)
                notes.append(f"site {name} {'changed' if name in old_sites else 'added'}")
        for name in old_sites.keys() - new_sites.keys():
            ms.delete_site(name)
            self.overlay_sites.pop(name, None)
            notes.append(f"site {name} removed")
        old_static = {static_key(m): m for m in old.static_mapping}
        new_static = {static_key(m): m for m in new.static_mapping}
        for k, m in new_static.items():
            if old_static.get(k) != m:
                ms.add_static_mapping(m.to_toml_dict(), now=now)
                self.overlay_static.pop(k, None)
                notes.append(f"static mapping {k} {'changed' if k in old_static else 'added'}")
        for k in old_static.keys() - new_static.keys():
            ms.delete_static_mapping(EidPrefix.parse(k))
            self.overlay_static.pop(k, None)
            notes.append(f"static mapping {k} removed")
        ms_cfg = ms_config(new)
        if ms_cfg != ms.config:
            prev = ms.config
            ms.config = ms_cfg
            if (prev.map_request_rate, prev.map_request_burst) != (ms_cfg.map_request_rate, ms_cfg.map_request_burst):
                ms.limiter = _rate_limiter(ms_cfg.map_request_rate, ms_cfg.map_request_burst, ms_cfg.rate_limit_sources)
            notes.append("map-server options applied")
        if notes:
            self.ctx.state_changed()
        return notes


class MappingCollector(Collector):
    """Prometheus view of the mapping engines' counters, read at scrape time.

    Families are ``lispnet_mapping_*`` with an ``engine`` label (``map-server`` /
    ``map-resolver``); rejections and table sizes are the Map-Server's."""

    def __init__(self, ms: MapServer | None, mr: MapResolver | None) -> None:
        self.ms = ms
        self.mr = mr

    def collect(self) -> Iterable[Any]:
        engines: list[tuple[str, Any]] = []
        if self.ms is not None:
            engines.append(("map-server", self.ms.counters))
        if self.mr is not None:
            engines.append(("map-resolver", self.mr.counters))
        spec = [
            ("messages_in", "Control messages handled, by engine and type", "type", "messages_in"),
            ("messages_out", "Control messages sent, by engine and type", "type", "messages_out"),
            ("decode_errors", "Undecodable datagrams, by engine and reason", "reason", "decode_errors"),
            ("requests", "Map-Request outcomes, by engine", "outcome", "requests"),
            ("dropped", "Datagrams dropped after decoding, by engine and reason", "reason", "dropped"),
            ("registration_events", "Registration outcomes (accepted, new, changed, expired, withdrawn)",
             "event", "registrations"),
        ]
        for name, doc, label, attr in spec:
            f = CounterMetricFamily(f"lispnet_mapping_{name}", doc, labels=["engine", label])
            for engine, counters in engines:
                for k, v in sorted(getattr(counters, attr).items()):
                    f.add_metric([engine, k], v)
            yield f
        ms = self.ms
        if ms is None:
            return
        rej = CounterMetricFamily("lispnet_mapping_rejections", "Rejected Map-Register records, by site and reason",
                                  labels=["site", "reason"])
        for r in ms.rejections():
            rej.add_metric([str(r.get("site") or ""), str(r["reason"])], int(r["count"]))
        yield rej
        yield GaugeMetricFamily("lispnet_mapping_registrations", "Installed registrations (registrant x prefix)",
                                value=len(ms.registrations))
        yield GaugeMetricFamily("lispnet_mapping_registered_prefixes", "Registered EID prefixes",
                                value=ms.registrations.prefix_count)
        yield GaugeMetricFamily("lispnet_mapping_sites", "Configured sites", value=len(ms.sites))


def _log_event(ctx: RoleContext, ev: Event) -> None:
    if isinstance(ev, SiteRegistered):
        rlocs = ", ".join(f"{loc.address} {loc.priority}/{loc.weight}" for loc in ev.locators)
        log.info("site %s: %s %s by %s [%s]", ev.site, ev.prefix, "registered" if ev.new else "changed", ev.etr, rlocs)
    elif isinstance(ev, RegistrationRejected):
        ctx.ratelog.warning(
            ("reject", ev.site, ev.reason),
            "Map-Register rejected: site %s reason %s from %s eid %s%s",
            ev.site or "(none)", ev.reason, ev.source, ev.prefix, f" ({ev.detail})" if ev.detail else "",
        )
    elif isinstance(ev, RegistrationExpired):
        ctx.ratelog.info(("expired", ev.site), "site %s: %s registration by %s expired", ev.site, ev.prefix, ev.etr)
    elif isinstance(ev, RegistrationWithdrawn):
        ctx.ratelog.info(("withdrawn", ev.site), "site %s: %s withdrawn (%s)", ev.site, ev.prefix, ev.reason)
    elif isinstance(ev, SiteChanged):
        log.info("%s %s %s", ev.kind, ev.name, ev.action)


def mr_config(cfg: NodeConfig) -> MapResolverConfig:
    mro = cfg.map_resolver_options
    return MapResolverConfig(
        negative_ttl=mro.negative_ttl,
        negative_action=mro.negative_action_code,
        map_request_rate=float(mro.map_request_rate_limit),
        accept_plain_requests=mro.accept_plain_requests,
        map_servers=tuple(
            MapServerPeer(Endpoint(ms.address, ms.port), ms.prefixes) for ms in cfg.map_server
        ),
    )


def _rate_limiter(rate: float, burst: float | None, sources: int) -> TokenBucketLimiter:
    return TokenBucketLimiter(rate, burst if burst is not None else max(1.0, rate), sources)


@register_role("map-server", "map-resolver")
def build_mapping(ctx: RoleContext) -> RoleRuntime:
    """One runtime for both roles.

    * map-server + map-resolver: the Map-Resolver engine wraps the co-located Map-Server
      (it hands requests over locally and passes every other message to it), so the
      daemon drives one engine for all the mapping-system message types;
    * map-server alone: the Map-Server takes registrations and answers requests too;
    * map-resolver alone: forwards to the ``[[map-server]]`` entries (M bit) and answers
      negatively for EIDs none of them claims.
    """
    cfg = ctx.config
    has_ms = "map-server" in cfg.roles
    has_mr = "map-resolver" in cfg.roles
    ms: MapServer | None = None
    mr: MapResolver | None = None
    if has_ms:
        ms = MapServer([site_policy(s) for s in cfg.site], ms_config(cfg), rng=ctx.rng)
        for m in cfg.static_mapping:
            ms.add_static_mapping(m.to_toml_dict(), now=ctx.clock())
    if has_mr:
        mr = MapResolver(mr_config(cfg), map_server=ms)
    engine: Engine
    if mr is not None:
        engine = mr
    else:
        assert ms is not None
        engine = ms
    kinds = [udp.ECM, udp.MAP_REQUEST]
    if ms is not None:
        kinds += [udp.MAP_REGISTER, udp.MAP_NOTIFY_ACK, udp.ECM_TO_MS]
    handlers: dict[str, Engine] = dict.fromkeys(kinds, engine)
    offload = _offload(cfg, engine, ms, mr)
    if offload is not None:
        # requests go through the offload's front, which teaches the kernel the answers
        handlers[udp.ECM] = handlers[udp.MAP_REQUEST] = offload

    service = MappingService(ms, mr, ctx)
    service.offload = offload
    ctx.metrics.register(MappingCollector(ms, mr))
    current = {"config": cfg}

    def reload(new: NodeConfig) -> Sequence[str]:
        notes = service.reload(current["config"], new)
        current["config"] = new
        return notes

    routers: list[Any] = []
    services: dict[str, Any] = {"mapping": service}
    if ms is not None:
        from ..api.mapping import mapping_router

        routers.append(mapping_router(service))
        services["map-server"] = ms
    if mr is not None:
        services["map-resolver"] = mr
    log.info(
        "map-server: %s; map-resolver: %s",
        f"{len(ms.sites)} site(s), {len(cfg.static_mapping)} static mapping(s)" if ms is not None else "off",
        ("co-located" if ms is not None else f"forwarding to {len(cfg.map_server)} map-server(s)") if mr else "off",
    )
    return RoleRuntime(
        name="mapping",
        covers=frozenset({"map-server", "map-resolver"}),
        handlers=handlers,
        engines=[engine],
        routers=routers,
        services=services,
        stats=service.stats,
        on_event=lambda ev: _log_event(ctx, ev),
        snapshot=service.snapshot if ms is not None else None,
        restore=service.restore if ms is not None else None,
        reload=reload,
        stop=offload.close if offload is not None else None,
    )


def _offload(cfg: NodeConfig, engine: Engine, ms: MapServer | None, mr: MapResolver | None) -> Any:
    """The kernel Map-Request offload when ``[node] map-request-offload = "ebpf"`` (None
    when off or when it cannot run: logged)."""
    if cfg.node.map_request_offload != "ebpf":
        return None
    if ms is None:
        log.warning("map-request-offload = ebpf needs the map-server role; not used")
        return None
    from .mapreq_offload import start_offload

    return start_offload(engine, ms, mr, cfg.node.control_addresses, cfg.node.control_port)


__all__ = ["MappingCollector", "MappingService", "build_mapping", "mr_config", "ms_config", "site_policy"]
