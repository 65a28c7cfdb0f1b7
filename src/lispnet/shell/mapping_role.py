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

import importlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..config.model import NodeConfig, Site, StaticMapping
from ..core.engine import Engine, Event
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
from .roles import RoleContext, RoleError, RoleRuntime, register_role

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

    def __init__(self, ms: MapServer, ctx: RoleContext) -> None:
        self.ms = ms
        self.ctx = ctx
        self.overlay_sites: dict[str, dict[str, Any] | None] = {}
        """API-written sites by name (None = deleted through the API)."""
        self.overlay_static: dict[str, dict[str, Any] | None] = {}
        """API-written static mappings by prefix text (None = deleted)."""

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
        return self.ms.stats()

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
        now = self.ctx.clock()
        old_sites = {s.name: s for s in old.site}
        new_sites = {s.name: s for s in new.site}
        for name, s in new_sites.items():
            if old_sites.get(name) != s:
                self.ms.add_site(site_policy(s), replace=True, now=now)
                self.overlay_sites.pop(name, None)
                notes.append(f"site {name} {'changed' if name in old_sites else 'added'}")
        for name in old_sites.keys() - new_sites.keys():
            self.ms.delete_site(name)
            self.overlay_sites.pop(name, None)
            notes.append(f"site {name} removed")
        old_static = {static_key(m): m for m in old.static_mapping}
        new_static = {static_key(m): m for m in new.static_mapping}
        for k, m in new_static.items():
            if old_static.get(k) != m:
                self.ms.add_static_mapping(m.to_toml_dict(), now=now)
                self.overlay_static.pop(k, None)
                notes.append(f"static mapping {k} {'changed' if k in old_static else 'added'}")
        for k in old_static.keys() - new_static.keys():
            self.ms.delete_static_mapping(EidPrefix.parse(k))
            self.overlay_static.pop(k, None)
            notes.append(f"static mapping {k} removed")
        new_cfg = ms_config(new)
        if new_cfg != self.ms.config:
            old_cfg = self.ms.config
            self.ms.config = new_cfg
            if (old_cfg.map_request_rate, old_cfg.map_request_burst) != (new_cfg.map_request_rate, new_cfg.map_request_burst):
                burst = new_cfg.map_request_burst if new_cfg.map_request_burst is not None else max(
                    1.0, new_cfg.map_request_rate
                )
                self.ms.limiter = TokenBucketLimiter(new_cfg.map_request_rate, burst, new_cfg.rate_limit_sources)
            notes.append("map-server / map-resolver options applied")
        if notes:
            self.ctx.state_changed()
        return notes


class MappingCollector(Collector):
    """Prometheus view of the Map-Server counters, read at scrape time."""

    def __init__(self, ms: MapServer) -> None:
        self.ms = ms

    def collect(self) -> Iterable[Any]:
        ms = self.ms
        c = ms.counters

        def fam(name: str, doc: str, label: str, data: Mapping[str, int]) -> CounterMetricFamily:
            f = CounterMetricFamily(name, doc, labels=[label])
            for k, v in sorted(data.items()):
                f.add_metric([k], v)
            return f

        yield fam("lispnet_map_server_messages_in", "Control messages handled by the Map-Server, by type", "type", c.messages_in)
        yield fam("lispnet_map_server_messages_out", "Control messages sent by the Map-Server, by type", "type", c.messages_out)
        yield fam("lispnet_map_server_decode_errors", "Undecodable datagrams, by reason", "reason", c.decode_errors)
        yield fam("lispnet_map_server_requests", "Map-Request outcomes", "outcome", c.requests)
        yield fam("lispnet_map_server_dropped", "Datagrams dropped after decoding, by reason", "reason", c.dropped)
        yield fam("lispnet_map_server_registration_events", "Registration outcomes (accepted, new, changed, expired, withdrawn)",
                  "event", c.registrations)
        rej = CounterMetricFamily("lispnet_map_server_rejections", "Rejected Map-Register records, by site and reason",
                                  labels=["site", "reason"])
        for r in ms.rejections():
            rej.add_metric([str(r.get("site") or ""), str(r["reason"])], int(r["count"]))
        yield rej
        yield GaugeMetricFamily("lispnet_map_server_registrations", "Installed registrations (registrant x prefix)",
                                value=len(ms.registrations))
        yield GaugeMetricFamily("lispnet_map_server_registered_prefixes", "Registered EID prefixes",
                                value=ms.registrations.prefix_count)
        yield GaugeMetricFamily("lispnet_map_server_sites", "Configured sites", value=len(ms.sites))


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


def _map_resolver_engine(ctx: RoleContext, ms: MapServer | None) -> Engine | None:
    """The Map-Resolver engine, if ``core.map_resolver`` provides a builder."""
    try:
        mod = importlib.import_module("lispnet.core.map_resolver")
    except ModuleNotFoundError as e:
        if e.name != "lispnet.core.map_resolver":
            raise
        return None
    build = getattr(mod, "from_config", None)
    if build is None:
        return None
    engine: Engine = build(ctx.config, map_server=ms, rng=ctx.rng)
    return engine


@register_role("map-server", "map-resolver")
def build_mapping(ctx: RoleContext) -> RoleRuntime:
    cfg = ctx.config
    roles = cfg.roles
    has_ms = "map-server" in roles
    has_mr = "map-resolver" in roles
    ms: MapServer | None = None
    handlers: dict[str, Engine] = {}
    engines: list[Engine] = []
    if has_ms or (has_mr and not cfg.map_server):
        # a Map-Resolver without Map-Servers to forward to answers from its own table
        # (negative replies for everything not statically mapped)
        ms = MapServer([site_policy(s) for s in cfg.site], ms_config(cfg), rng=ctx.rng)
        for m in cfg.static_mapping:
            ms.add_static_mapping(m.to_toml_dict(), now=ctx.clock())
        engines.append(ms)
        handlers.update({
            udp.MAP_REGISTER: ms,
            udp.MAP_NOTIFY_ACK: ms,
            udp.ECM_TO_MS: ms,
            udp.ECM: ms,
            udp.MAP_REQUEST: ms,
        })
    if has_mr:
        mr = _map_resolver_engine(ctx, ms)
        if mr is not None:
            engines.append(mr)
            handlers.update({udp.ECM: mr, udp.MAP_REQUEST: mr, udp.MAP_REPLY: mr, udp.MAP_REFERRAL: mr})
        elif ms is None:
            raise RoleError("map-resolver with [[map-server]] forwarding needs lispnet.core.map_resolver")
    if ms is None:
        return RoleRuntime(name="mapping", covers=frozenset({"map-server", "map-resolver"}), handlers=handlers,
                           engines=engines)

    service = MappingService(ms, ctx)
    ctx.metrics.register(MappingCollector(ms))
    current = {"config": cfg}

    def reload(new: NodeConfig) -> Sequence[str]:
        notes = service.reload(current["config"], new)
        current["config"] = new
        return notes

    from ..api.mapping import mapping_router

    log.info(
        "map-server: %d site(s), %d static mapping(s); map-resolver: %s",
        len(ms.sites), len(cfg.static_mapping), "on" if has_mr else "off",
    )
    return RoleRuntime(
        name="mapping",
        covers=frozenset({"map-server", "map-resolver"}),
        handlers=handlers,
        engines=engines,
        routers=[mapping_router(service)],
        services={"map-server": ms, "mapping": service},
        stats=service.stats,
        on_event=lambda ev: _log_event(ctx, ev),
        snapshot=service.snapshot,
        restore=service.restore,
        reload=reload,
    )


__all__ = ["MappingCollector", "MappingService", "build_mapping", "ms_config", "site_policy"]
