"""Map-Server sites and the registration table (RFC 9301 section 8.2; spec 11.3).

A **site** (:class:`SitePolicy`) is what an operator configures: the keys its ETRs sign
Map-Registers with (several key-ids, so a site can be rekeyed without downtime), the
EID-prefixes it may register (per instance-id, optionally accepting more-specifics),
and optionally the RLOCs it may use - an ETR is trusted only within its site's policy
("asset-controlled" registration).

A **registration** (:class:`Registration`) is one registrant's claim on one prefix: the
locator set, the flags, who sent it and when it expires.  Registrants are told apart by
xTR-ID when the Map-Register carries one (I bit), else by the source RLOC, so several
ETRs of a multi-homed site coexist.  The **registered prefix**
(:class:`RegisteredPrefix`) merges them: with merging (the a-bit, or ``force_merge`` on
the site; RFC 9301 and RFC 8378) its locator set is the union of the registrants' sets,
otherwise the most recently refreshed registrant wins.  Static mappings are permanent
registrations of registrant ``"static"``.

:class:`RegistrationTable` stores registered prefixes in an LPM table (their expiry is
the Map-Server's, ``core/expiry.py``); it never reads a clock.  Memory matters at a
million EIDs: a prefix with one registrant holds it without a dict, a re-registration
updates the installed object in place, and locator tuples and wire signatures are
shared objects (about 700 bytes per registered EID in all, LPM indexes included).

Every class has ``to_dict()`` giving a JSON-able view (kebab-case keys like the config
and the REST API); ``SitePolicy.from_dict`` reads the same format ``config.model.Site``
writes with ``to_toml_dict()``, so state files and API bodies round-trip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from ..wire.enums import Action, AuthAlg
from ..wire.prefix import EidPrefix
from ..wire.records import LocatorRecord
from .lpm import LpmTable

IPNet = IPv4Network | IPv6Network
IPAddr = IPv4Address | IPv6Address
EtrAddress = tuple[IPAddr, int]
"""(address, port) a Map-Register came from (``core.engine.Endpoint`` without the import)."""

DEFAULT_REGISTRATION_TIMEOUT_S = 180.0
"""3 x the 60 s Map-Register interval (spec section 12)."""

ALG_NAMES: dict[int, str] = {AuthAlg.HMAC_SHA_1_96: "hmac-sha-1", AuthAlg.HMAC_SHA_256_128: "hmac-sha-256"}
ALG_BY_NAME: dict[str, AuthAlg] = {v: AuthAlg(k) for k, v in ALG_NAMES.items()}
ACTION_NAMES: dict[int, str] = {a: a.name.lower().replace("_", "-") for a in Action}
ACTION_BY_NAME: dict[str, Action] = {v: Action(k) for k, v in ACTION_NAMES.items()}

RegistrantKey = int | str
"""xTR-ID (int) when the registration carried one, else ``"rloc:<source address>"``, or ``"static"``."""

STATIC = "static"


def registrant_key(xtr_id: int | None, source: EtrAddress | None) -> RegistrantKey:
    if xtr_id is not None:
        return xtr_id
    if source is None:
        return STATIC
    return f"rloc:{source[0]}"


# --- site policy ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteKey:
    """One pre-shared key of a site."""

    alg: AuthAlg
    """HMAC algorithm the key is used with."""
    key: bytes = field(repr=False)
    """The secret."""


@dataclass(frozen=True, slots=True)
class AllowedPrefix:
    """An EID-prefix a site may register."""

    prefix: EidPrefix
    """The prefix (instance-id included)."""
    accept_more_specifics: bool = False
    """Also accept registrations of prefixes inside this one."""

    def allows(self, prefix: EidPrefix) -> bool:
        if prefix.mask_len == self.prefix.mask_len:
            return self.prefix.contains(prefix)
        return self.accept_more_specifics and self.prefix.contains(prefix)


@dataclass(frozen=True, slots=True, eq=False)
class SitePolicy:
    """A configured Map-Server site."""

    name: str
    """Unique site name."""
    keys: Mapping[int, SiteKey]
    """key-id -> (algorithm, key); a Map-Register must use one of these."""
    eid_prefixes: tuple[AllowedPrefix, ...] = ()
    """What the site may register."""
    allowed_rlocs: tuple[IPNet, ...] = ()
    """When not empty, every IP locator registered must be inside one of these."""
    proxy_reply: bool | None = None
    """True: always proxy-reply; False: never; None: as each registration's P bit asks."""
    force_merge: bool = False
    """Merge the registrants' RLOC sets even without the a-bit."""
    enabled: bool = True
    """A disabled site rejects all registrations (reason ``site-disabled``)."""
    description: str = ""
    """Free text."""
    unregistered_action: Action = Action.NATIVELY_FORWARD
    """ACT of the 1-minute negative reply for configured but unregistered EIDs."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("site name must not be empty")
        if not self.keys:
            raise ValueError(f"site {self.name}: at least one authentication key is needed")
        for kid in self.keys:
            if not 0 <= kid <= 0xFFFF:
                raise ValueError(f"site {self.name}: key-id {kid} out of range")
        object.__setattr__(self, "keys", dict(self.keys))
        object.__setattr__(self, "eid_prefixes", tuple(self.eid_prefixes))
        object.__setattr__(self, "allowed_rlocs", tuple(self.allowed_rlocs))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SitePolicy):
            return NotImplemented
        return self.to_dict(include_keys=True) == other.to_dict(include_keys=True)

    __hash__ = None  # type: ignore[assignment]

    def key_for(self, key_id: int, alg_id: int) -> SiteKey | None:
        """The key a Map-Register with (Key ID, Algorithm ID) must verify with, or None.

        RFC 6830 peers (OOR) send one 16-bit "Key ID" that is really the algorithm
        (0x0001 / 0x0002, i.e. key-id byte 0).  A site configured the old way - key-id 1
        for HMAC-SHA-1, 2 for HMAC-SHA-256 - is therefore also matched on the algorithm.
        """
        k = self.keys.get(key_id)
        if k is not None:
            return k if k.alg == alg_id else None
        if key_id == 0:
            k = self.keys.get(alg_id)
            if k is not None and k.alg == alg_id:
                return k
        return None

    def rloc_allowed(self, loc: LocatorRecord) -> bool:
        if not self.allowed_rlocs:
            return True
        a = loc.address
        if not isinstance(a, IPv4Address | IPv6Address):
            return False  # an LCAF locator cannot be checked against the allowed RLOC prefixes
        return any(a.version == n.version and a in n for n in self.allowed_rlocs)

    def allowed_prefix_for(self, prefix: EidPrefix) -> AllowedPrefix | None:
        for ap in self.eid_prefixes:
            if ap.allows(prefix):
                return ap
        return None

    # --- JSON views -------------------------------------------------------------------
    def to_dict(self, include_keys: bool = False) -> dict[str, Any]:
        """The site in the config/REST schema; keys are hidden unless ``include_keys``."""
        keys: list[dict[str, Any]] = []
        for kid, k in sorted(self.keys.items()):
            entry: dict[str, Any] = {"key-id": kid, "algorithm": ALG_NAMES.get(k.alg, str(int(k.alg)))}
            if include_keys:
                try:
                    entry["key"] = k.key.decode("utf-8")
                except UnicodeDecodeError:
                    entry["key-hex"] = k.key.hex()
            keys.append(entry)
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "authentication-keys": keys,
            "eid-prefixes": [
                {
                    "prefix": f"{ap.prefix.address}/{ap.prefix.mask_len}",
                    "instance-id": ap.prefix.iid,
                    "accept-more-specifics": ap.accept_more_specifics,
                }
                for ap in self.eid_prefixes
            ],
            "allowed-rlocs": [str(n) for n in self.allowed_rlocs],
            "force-merge": self.force_merge,
            "enabled": self.enabled,
        }
        if self.proxy_reply is not None:
            d["proxy-reply"] = self.proxy_reply
        if self.unregistered_action != Action.NATIVELY_FORWARD:
            d["unregistered-action"] = ACTION_NAMES.get(self.unregistered_action, str(int(self.unregistered_action)))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SitePolicy:
        """Read the schema of :meth:`to_dict` (``include_keys=True``) / ``config.model.Site``.

        Raises ``ValueError`` (or ``KeyError``) with the offending field on bad input.
        """
        keys: dict[int, SiteKey] = {}
        for kd in d.get("authentication-keys", ()):
            alg_name = kd.get("algorithm", "hmac-sha-256")
            if alg_name not in ALG_BY_NAME:
                raise ValueError(f"unknown algorithm {alg_name!r}")
            if "key" in kd:
                secret = str(kd["key"]).encode("utf-8")
            elif "key-hex" in kd:
                secret = bytes.fromhex(kd["key-hex"])
            else:
                raise ValueError("authentication key without 'key'")
            keys[int(kd.get("key-id", 0))] = SiteKey(ALG_BY_NAME[alg_name], secret)
        prefixes = tuple(
            AllowedPrefix(
                EidPrefix.parse(str(pd["prefix"]), int(pd.get("instance-id", 0))),
                bool(pd.get("accept-more-specifics", False)),
            )
            for pd in d.get("eid-prefixes", ())
        )
        action_name = d.get("unregistered-action", "natively-forward")
        if action_name not in ACTION_BY_NAME:
            raise ValueError(f"unknown action {action_name!r}")
        return cls(
            name=str(d["name"]),
            keys=keys,
            eid_prefixes=prefixes,
            allowed_rlocs=tuple(ip_network(str(n), strict=False) for n in d.get("allowed-rlocs", ())),
            proxy_reply=d.get("proxy-reply"),
            force_merge=bool(d.get("force-merge", False)),
            enabled=bool(d.get("enabled", True)),
            description=str(d.get("description", "")),
            unregistered_action=ACTION_BY_NAME[action_name],
        )


# --- registrations -------------------------------------------------------------------

def configured_prefixes(sites: Iterable[SitePolicy]) -> LpmTable[list[tuple[SitePolicy, AllowedPrefix]]]:
    """Every site's configured EID prefixes in one table (a prefix may belong to several sites)."""
    t: LpmTable[list[tuple[SitePolicy, AllowedPrefix]]] = LpmTable()
    for s in sites:
        for ap in s.eid_prefixes:
            lst = t.exact(ap.prefix)
            if lst is None:
                t.insert(ap.prefix, [(s, ap)])
            else:
                lst.append((s, ap))
    return t



@dataclass(slots=True)
class Registration:
    """One registrant's registration of one prefix."""

    prefix: EidPrefix
    """The registered EID-prefix."""
    site: str | None
    """Name of the site it belongs to (None for a static mapping outside every site)."""
    locators: tuple[LocatorRecord, ...]
    """The locator set this registrant registered."""
    ttl: int
    """Record TTL (minutes) as registered; what proxy Map-Replies carry."""
    etr: EtrAddress | None
    """Source (address, port) of the Map-Register; None for a static mapping."""
    xtr_id: int | None = None
    """xTR-ID (I bit) of the registrant."""
    site_id: int | None = None
    """site-ID (I bit) of the registrant."""
    proxy_reply: bool = False
    """P bit: the registrant asked the MS to answer Map-Requests."""
    merge: bool = False
    """a bit: merge with the other registrants' locator sets."""
    use_ttl: bool = False
    """T bit: time the registration out after the record TTL."""
    want_map_notify: bool = False
    """M bit of the last Map-Register."""
    key_id: int = 0
    """Key ID the last Map-Register was signed with."""
    alg_id: int = 0
    """Algorithm ID the last Map-Register was signed with."""
    map_version: int = 0
    """Map-version of the registered record."""
    action: Action = Action.NO_ACTION
    """ACT of the registered record (meaningful for a negative static mapping)."""
    first_registered: float = 0.0
    """``now`` of the first Map-Register."""
    last_registered: float = 0.0
    """``now`` of the latest Map-Register."""
    expires_at: float = math.inf
    """Absolute expiry time (inf for static mappings)."""
    registrations: int = 1
    """Map-Registers received for it (refreshes included)."""
    rkey: RegistrantKey | None = field(default=None, repr=False)
    """The registrant key, when the installer already computed it (else derived)."""
    sig: bytes | None = field(default=None, repr=False)
    """What the registering record looked like on the wire, EID left out (a shared
    object, see ``core/regfast.py``): an identical refresh only moves the expiry."""
    filed_at: int = field(default=0, repr=False)
    """Second of the expiry bucket holding it (``core/expiry.py``); 0 = none."""

    @property
    def is_static(self) -> bool:
        return self.etr is None

    @property
    def key(self) -> RegistrantKey:
        k = self.rkey
        return k if k is not None else registrant_key(self.xtr_id, self.etr)

    def update_from(self, new: Registration) -> None:
        """Take the content of a re-registration of the same registrant (in place, so
        the expiry buckets and the installed entry keep this object)."""
        self.prefix = new.prefix
        self.site = new.site
        self.locators = new.locators
        self.ttl = new.ttl
        self.etr = new.etr
        self.xtr_id = new.xtr_id
        self.site_id = new.site_id
        self.proxy_reply = new.proxy_reply
        self.merge = new.merge
        self.use_ttl = new.use_ttl
        self.want_map_notify = new.want_map_notify
        self.key_id = new.key_id
        self.alg_id = new.alg_id
        self.map_version = new.map_version
        self.action = new.action
        self.last_registered = new.last_registered
        self.expires_at = new.expires_at
        self.registrations += 1
        if new.rkey is not None:
            self.rkey = new.rkey
        self.sig = new.sig

    def same_content(self, other: Registration) -> bool:
        """Whether a refresh changes what Map-Requests would be answered with."""
        return (
            self.locators == other.locators
            and self.ttl == other.ttl
            and self.proxy_reply == other.proxy_reply
            and self.merge == other.merge
            and self.map_version == other.map_version
            and self.action == other.action
        )

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "eid-prefix": f"{self.prefix.address}/{self.prefix.mask_len}",
            "instance-id": self.prefix.iid,
            "site": self.site,
            "rlocs": [locator_to_dict(loc) for loc in self.locators],
            "ttl": self.ttl,
            "registrant": _endpoint_text(self.etr),
            "xtr-id": f"{self.xtr_id:032x}" if self.xtr_id is not None else None,
            "site-id": self.site_id,
            "proxy-reply": self.proxy_reply,
            "merge": self.merge,
            "use-ttl": self.use_ttl,
            "key-id": self.key_id,
            "first-registered": self.first_registered,
            "last-registered": self.last_registered,
            "expires-at": None if math.isinf(self.expires_at) else self.expires_at,
            "registrations": self.registrations,
        }
        if self.is_static:
            d["action"] = ACTION_NAMES.get(self.action, str(int(self.action)))
        if now is not None and not math.isinf(self.expires_at):
            d["expires-in"] = max(0.0, self.expires_at - now)
        return d


def _endpoint_text(etr: EtrAddress | None) -> str:
    if etr is None:
        return STATIC
    a, port = etr
    return f"[{a}]:{port}" if a.version == 6 else f"{a}:{port}"


def locator_to_dict(loc: LocatorRecord) -> dict[str, Any]:
    return {
        "address": str(loc.address),
        "priority": loc.priority,
        "weight": loc.weight,
        "m-priority": loc.m_priority,
        "m-weight": loc.m_weight,
        "reachable": loc.reachable,
    }


def locator_from_dict(d: Mapping[str, Any]) -> LocatorRecord:
    return LocatorRecord(
        ip_address(str(d["address"])),
        int(d.get("priority", 1)),
        int(d.get("weight", 100)),
        int(d.get("m-priority", 255)),
        int(d.get("m-weight", 0)),
        reachable=bool(d.get("reachable", True)),
    )


class RegisteredPrefix:
    """Everything registered for one EID-prefix: its registrants and their merged view.

    Nearly every prefix has one registrant, so it is held directly (``_one`` with its
    key in ``_key``); a dict is made only for the second one (a 1-entry dict costs
    about 200 bytes, a million of them 200 MB)."""

    __slots__ = ("prefix", "site", "_one", "_key", "_more", "locators", "ttl", "proxy_reply", "action",
                 "map_version", "reply_cache")

    def __init__(self, prefix: EidPrefix, site: str | None) -> None:
        self.prefix = prefix
        """The EID-prefix."""
        self.site = site
        """Owning site (None for a static mapping outside every site)."""
        self._one: Registration | None = None
        self._key: RegistrantKey | None = None
        self._more: dict[RegistrantKey, Registration] | None = None
        self.locators: tuple[LocatorRecord, ...] = ()
        """The merged (or latest) locator set answered with."""
        self.ttl = 1440
        """Record TTL (minutes) answered with: the latest registration's."""
        self.proxy_reply = False
        """Whether the MS answers Map-Requests itself (P bit of any registrant, site policy, static)."""
        self.action = Action.NO_ACTION
        """ACT when the merged set is empty (negative static mapping)."""
        self.map_version = 0
        """Map-version of the latest registration."""
        self.reply_cache: bytes | None = None
        """Encoded proxy Map-Reply with nonce 0, rebuilt lazily after any change."""

    def __repr__(self) -> str:
        return f"RegisteredPrefix({self.prefix!s}, site={self.site!r}, registrants={self.count()})"

    # --- registrants ----------------------------------------------------------------
    @property
    def registrants(self) -> dict[RegistrantKey, Registration]:
        """Registrant key -> registration, in first-registration order (a copy)."""
        if self._more is not None:
            return dict(self._more)
        if self._one is not None:
            assert self._key is not None
            return {self._key: self._one}
        return {}

    def count(self) -> int:
        """Number of registrants."""
        if self._more is not None:
            return len(self._more)
        return 0 if self._one is None else 1

    def registrant(self, key: RegistrantKey) -> Registration | None:
        if self._more is not None:
            return self._more.get(key)
        return self._one if self._one is not None and self._key == key else None

    def only(self) -> Registration | None:
        """The registration when there is exactly one registrant."""
        return self._one

    def registrations(self) -> list[Registration]:
        if self._more is not None:
            return list(self._more.values())
        return [] if self._one is None else [self._one]

    def set_registrant(self, key: RegistrantKey, reg: Registration) -> None:
        if self._more is not None:
            self._more[key] = reg
        elif self._one is None or self._key == key:
            self._one, self._key = reg, key
        else:
            assert self._key is not None
            self._more = {self._key: self._one, key: reg}
            self._one = self._key = None

    def pop_registrant(self, key: RegistrantKey) -> Registration | None:
        more = self._more
        if more is not None:
            reg = more.pop(key, None)
            if len(more) == 1:
                (self._key, self._one), = more.items()
                self._more = None
            return reg
        if self._one is not None and self._key == key:
            reg, self._one, self._key = self._one, None, None
            return reg
        return None

    def recompute(self, force_merge: bool, force_proxy: bool | None) -> None:
        """Refresh the merged view after registrants changed (drops the reply cache)."""
        self.reply_cache = None
        one = self._one
        if one is not None and not (force_merge or one.merge):  # the common case, as below
            self.ttl = one.ttl
            self.map_version = one.map_version
            self.action = one.action
            self.locators = one.locators
            static = one.etr is None
            self.proxy_reply = force_proxy if force_proxy is not None and not static else static or one.proxy_reply
            return
        regs = self.registrations()
        if not regs:
            self.locators = ()
            return
        latest = max(regs, key=lambda r: r.last_registered)
        self.ttl = latest.ttl
        self.map_version = latest.map_version
        self.action = latest.action
        if force_merge or any(r.merge for r in regs):
            seen: dict[object, LocatorRecord] = {}
            for r in sorted(regs, key=lambda r: r.last_registered):
                for loc in r.locators:
                    seen.pop(loc.address, None)  # the latest registrant's copy wins, kept in place order
                    seen[loc.address] = loc
            # order: by the registrants' first appearance, then their locator order
            order: dict[object, LocatorRecord] = {}
            for r in regs:
                for loc in r.locators:
                    order.setdefault(loc.address, seen[loc.address])
            self.locators = tuple(order.values())
        else:
            self.locators = latest.locators
        any_static = any(r.is_static for r in regs)
        if force_proxy is not None and not any_static:
            self.proxy_reply = force_proxy
        else:
            self.proxy_reply = any_static or any(r.proxy_reply for r in regs)

    def etr_rlocs(self) -> list[LocatorRecord]:
        """Usable unicast IP locators, best priority first (where to forward Map-Requests)."""
        locs = [
            loc
            for loc in self.locators
            if loc.priority != 255 and loc.reachable and isinstance(loc.address, IPv4Address | IPv6Address)
        ]
        locs.sort(key=lambda loc: loc.priority)
        return locs

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "eid-prefix": f"{self.prefix.address}/{self.prefix.mask_len}",
            "instance-id": self.prefix.iid,
            "site": self.site,
            "rlocs": [locator_to_dict(loc) for loc in self.locators],
            "ttl": self.ttl,
            "proxy-reply": self.proxy_reply,
            "registrants": [r.to_dict(now) for r in self.registrations()],
        }


class RegistrationTable:
    """Registered prefixes in an LPM table, with a count of registrants.

    Expiry is the caller's business (the Map-Server files each registration in
    ``core.expiry.ExpiryBuckets``), which keeps this module free of engine imports.
    """

    __slots__ = ("table", "_count", "version", "journal")

    def __init__(self) -> None:
        self.table: LpmTable[RegisteredPrefix] = LpmTable()
        """Prefix -> :class:`RegisteredPrefix`."""
        self._count = 0
        self.version = 0
        """Bumped whenever a prefix is added or removed (not on content changes): caches
        derived from the set of prefixes, like negative replies, compare it."""
        self.journal: set[EidPrefix] | None = None
        """When a set, every prefix whose answer may have changed (added, removed, new
        content) is added to it: replicas (``shell/workers.py``) drain it."""

    def touched(self, prefix: EidPrefix) -> None:
        """Record that the answer for ``prefix`` may have changed (see ``journal``)."""
        if self.journal is not None:
            self.journal.add(prefix)

    def __len__(self) -> int:
        """Number of registrations (registrants summed over prefixes)."""
        return self._count

    @property
    def prefix_count(self) -> int:
        return len(self.table)

    def get(self, prefix: EidPrefix) -> RegisteredPrefix | None:
        return self.table.exact(prefix)

    def lookup(self, eid: EidPrefix) -> RegisteredPrefix | None:
        """Longest-match registered prefix covering ``eid``."""
        return self.table.lookup(eid)

    def upsert(
        self,
        reg: Registration,
        force_merge: bool = False,
        force_proxy: bool | None = None,
        key: RegistrantKey | None = None,
    ) -> tuple[RegisteredPrefix, Registration | None, bool]:
        """Install or refresh ``reg``.  Returns (entry, previous registration, changed).

        ``changed`` is True when answers for the prefix change (new registrant, new
        locators or flags).  A re-registration of an installed registrant updates the
        installed object in place (``Registration.update_from``: ``first_registered``
        kept, ``registrations`` counted up) and returns it as the previous one; the
        installed object is ``entry.registrant(key)`` either way.
        """
        entry = self.table.exact(reg.prefix)
        if entry is None:
            entry = RegisteredPrefix(reg.prefix, reg.site)
            self.table.insert(reg.prefix, entry)
            self.version += 1
        if key is None:
            key = reg.key
        prev = entry.registrant(key)
        if prev is not None:
            changed = not prev.same_content(reg)
            prev.update_from(reg)
        else:
            self._count += 1
            changed = True
            entry.set_registrant(key, reg)
        if changed:
            entry.recompute(force_merge, force_proxy)
            if self.journal is not None:
                self.journal.add(reg.prefix)
        return entry, prev, changed

    def remove(
        self, prefix: EidPrefix, key: RegistrantKey, force_merge: bool = False, force_proxy: bool | None = None
    ) -> Registration | None:
        """Drop one registrant; the prefix goes when its last registrant does."""
        entry = self.table.exact(prefix)
        if entry is None:
            return None
        reg = entry.pop_registrant(key)
        if reg is None:
            return None
        self._count -= 1
        if self.journal is not None:
            self.journal.add(prefix)
        if entry.count():
            entry.recompute(force_merge, force_proxy)
        else:
            self.table.delete(prefix)
            self.version += 1
        return reg

    def site_registrations(self, site: str) -> list[Registration]:
        """Every registration of ``site`` (static ones included)."""
        return [r for _, e in self.table.items() if e.site == site for r in e.registrations()]

    def items(
        self, iid: int | None = None, prefix: EidPrefix | None = None, site: str | None = None
    ) -> Iterator[RegisteredPrefix]:
        """Registered prefixes, optionally of one instance-id, inside ``prefix``, of one site."""
        if prefix is not None:
            it: Iterator[tuple[EidPrefix, RegisteredPrefix]] = self.table.covered_by(prefix)
        else:
            it = self.table.items(iid=iid)
        for p, entry in it:
            if iid is not None and p.iid != iid:
                continue
            if site is not None and entry.site != site:
                continue
            yield entry


__all__ = [
    "ACTION_BY_NAME",
    "ACTION_NAMES",
    "ALG_BY_NAME",
    "ALG_NAMES",
    "AllowedPrefix",
    "DEFAULT_REGISTRATION_TIMEOUT_S",
    "EtrAddress",
    "RegisteredPrefix",
    "Registration",
    "RegistrationTable",
    "RegistrantKey",
    "SiteKey",
    "SitePolicy",
    "STATIC",
    "locator_from_dict",
    "locator_to_dict",
    "registrant_key",
]
