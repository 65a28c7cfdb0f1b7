"""Service methods of the Map-Server (the REST API and the state file call these).

Split from ``map_server.py`` to keep modules small: a mixin over the attributes the
engine owns.  Sites and static mappings go through ``SitePolicy`` / dict views in the
same kebab-case schema as the TOML config, so config, API and state file convert
directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..db.lpm import LpmTable
from ..db.sites import (
    ACTION_BY_NAME,
    ACTION_NAMES,
    STATIC,
    AllowedPrefix,
    Registration,
    RegistrationTable,
    SitePolicy,
    locator_from_dict,
    locator_to_dict,
)
from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from ..wire.records import LocatorRecord
from .engine import Event
from .mapsys import Counters, RegistrationWithdrawn, Rejection, SiteChanged
from .ratelimit import TokenBucketLimiter


class MapServerService:
    """Sites, static mappings, registrations, rejections, counters, snapshot/restore."""

    sites: dict[str, SitePolicy]
    configured: LpmTable[list[tuple[SitePolicy, AllowedPrefix]]]
    registrations: RegistrationTable
    counters: Counters
    limiter: TokenBucketLimiter
    _rejections: dict[tuple[str | None, str], Rejection]
    _emit: Callable[[Event], None]
    _rebuild_configured: Callable[[], None]
    _remove_registration: Callable[[Registration], None]
    _site_flags: Callable[[str | None], tuple[bool, bool | None]]

    def list_sites(self) -> list[dict[str, Any]]:
        """Every site (keys hidden) with its registration and rejection counts."""
        return [self.get_site(name) or {} for name in sorted(self.sites)]

    def get_site(self, name: str) -> dict[str, Any] | None:
        """One site (keys hidden), its registered prefixes and its rejections."""
        s = self.sites.get(name)
        if s is None:
            return None
        d = s.to_dict(include_keys=False)
        regs = list(self.registrations.items(site=name))
        d["registered-prefixes"] = len(regs)
        d["registrations"] = sum(e.count() for e in regs)
        d["rejections"] = [r.to_dict() for (sn, _), r in sorted(self._rejections.items(), key=_rej_key) if sn == name]
        return d

    def add_site(self, site: SitePolicy | Mapping[str, Any], replace: bool = True, now: float = 0.0) -> bool:
        """Add (or replace) a site at run time; returns True if it replaced one.

        A dict is read with ``SitePolicy.from_dict`` (the config/REST schema).  Existing
        registrations that the new policy no longer allows are withdrawn.
        """
        policy = site if isinstance(site, SitePolicy) else SitePolicy.from_dict(site)
        old = self.sites.get(policy.name)
        if old is not None and not replace:
            raise ValueError(f"site {policy.name!r} exists")
        self.sites[policy.name] = policy
        self._rebuild_configured()
        if old is not None:
            for reg in self.registrations.site_registrations(policy.name):
                if reg.is_static:
                    continue
                ok = policy.allowed_prefix_for(reg.prefix) is not None and all(
                    policy.rloc_allowed(loc) for loc in reg.locators
                )
                if not ok:
                    self._remove_registration(reg)
                    self._emit(RegistrationWithdrawn(policy.name, reg.prefix, "site-changed"))
            for entry in list(self.registrations.items(site=policy.name)):
                entry.recompute(policy.force_merge, policy.proxy_reply)
                self.registrations.touched(entry.prefix)
        self._emit(SiteChanged("site", policy.name, "replaced" if old else "added"))
        return old is not None

    def delete_site(self, name: str) -> bool:
        """Remove a site and its dynamic registrations (static mappings stay)."""
        if self.sites.pop(name, None) is None:
            return False
        self._rebuild_configured()
        for reg in self.registrations.site_registrations(name):
            if not reg.is_static:
                self._remove_registration(reg)
                self._emit(RegistrationWithdrawn(name, reg.prefix, "site-deleted"))
        self._emit(SiteChanged("site", name, "deleted"))
        return True

    def add_static_mapping(
        self,
        prefix: EidPrefix | Mapping[str, Any],
        locators: Sequence[LocatorRecord] = (),
        ttl: int = 1440,
        action: Action = Action.NO_ACTION,
        now: float = 0.0,
    ) -> None:
        """A mapping answered (proxy reply) without registration; never expires.

        ``prefix`` may be a ``config.model.StaticMapping``-style dict (``eid-prefix``,
        ``instance-id``, ``rlocs``, ``ttl``, ``action``).
        """
        if not isinstance(prefix, EidPrefix):
            d = prefix
            prefix = EidPrefix.parse(str(d["eid-prefix"]), int(d.get("instance-id", 0)))
            locators = tuple(locator_from_dict(x) for x in d.get("rlocs", ()))
            ttl = int(d.get("ttl", 1440))
            name = d.get("action", "no-action")
            if name not in ACTION_BY_NAME:
                raise ValueError(f"unknown action {name!r}")
            action = ACTION_BY_NAME[name]
        prefix = prefix.masked()
        hit = self.configured.longest_match(prefix)
        site = hit[1][0][0].name if hit is not None else None
        reg = Registration(
            prefix=prefix,
            site=site,
            locators=tuple(locators),
            ttl=ttl,
            etr=None,
            action=action,
            first_registered=now,
            last_registered=now,
            expires_at=math.inf,
        )
        fm, fp = self._site_flags(site)
        self.registrations.upsert(reg, fm, fp)
        self._emit(SiteChanged("static-mapping", str(prefix), "added"))

    def delete_static_mapping(self, prefix: EidPrefix) -> bool:
        entry = self.registrations.get(prefix)
        reg = entry.registrant(STATIC) if entry is not None else None
        if reg is None:
            return False
        self._remove_registration(reg)
        self._emit(SiteChanged("static-mapping", str(prefix), "deleted"))
        return True

    def static_mappings(self) -> list[dict[str, Any]]:
        """Static mappings in the ``config.model.StaticMapping`` schema."""
        out = []
        for entry in self.registrations.items():
            reg = entry.registrant(STATIC)
            if reg is None:
                continue
            out.append(
                {
                    "eid-prefix": f"{reg.prefix.address}/{reg.prefix.mask_len}",
                    "instance-id": reg.prefix.iid,
                    "rlocs": [locator_to_dict(loc) for loc in reg.locators],
                    "ttl": reg.ttl,
                    "action": ACTION_NAMES.get(reg.action, "no-action"),
                }
            )
        return out

    def list_registrations(
        self,
        iid: int | None = None,
        prefix: EidPrefix | None = None,
        site: str | None = None,
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """Registered prefixes (merged view + each registrant), filtered."""
        return [e.to_dict(now) for e in self.registrations.items(iid=iid, prefix=prefix, site=site)]

    def rejections(self, site: str | None = None) -> list[dict[str, Any]]:
        """Rejection counts with the last offender, per (site, reason)."""
        return [
            r.to_dict()
            for (sn, _), r in sorted(self._rejections.items(), key=_rej_key)
            if site is None or sn == site
        ]

    def stats(self) -> dict[str, Any]:
        """Counters plus table sizes (for ``GET /stats`` and metrics)."""
        d: dict[str, Any] = dict(self.counters.as_dict())
        d["sites"] = len(self.sites)
        d["registered-prefixes"] = self.registrations.prefix_count
        d["registrations-installed"] = len(self.registrations)
        d["rate-limited-sources"] = len(self.limiter)
        return d

    counters_dict = stats

    def snapshot(self) -> dict[str, Any]:
        """The writable database (sites with keys, static mappings) as JSON-able data."""
        return {
            "sites": [self.sites[n].to_dict(include_keys=True) for n in sorted(self.sites)],
            "static-mappings": self.static_mappings(),
        }

    def restore(self, data: Mapping[str, Any], replace_all: bool = False) -> None:
        """Load a :meth:`snapshot`.  Same-named sites and same-prefix static mappings are
        replaced; with ``replace_all`` everything not in ``data`` is removed first.
        Raises ``ValueError``/``KeyError`` on malformed data before changing anything."""
        sites = [SitePolicy.from_dict(d) for d in data.get("sites", ())]
        statics = list(data.get("static-mappings", ()))
        for d in statics:  # validate before touching anything
            EidPrefix.parse(str(d["eid-prefix"]), int(d.get("instance-id", 0)))
            for x in d.get("rlocs", ()):
                locator_from_dict(x)
        if replace_all:
            for name in list(self.sites):
                self.delete_site(name)
            for entry in list(self.registrations.items()):
                if entry.registrant(STATIC) is not None:
                    self.delete_static_mapping(entry.prefix)
        for s in sites:
            self.add_site(s)
        for d in statics:
            self.add_static_mapping(d)


def _rej_key(item: tuple[tuple[str | None, str], Rejection]) -> tuple[str, str]:
    (site, reason), _ = item
    return (site or "", reason)
