"""Pieces shared by the Map-Server and Map-Resolver engines: the northbound events, the
counters and rejection records the REST API shows, and small reply helpers.

Kept apart from ``map_server.py`` so each module stays readable; ``map_server`` re-exports
every public name, so ``from lispnet.core.map_server import SiteRegistered`` works.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

from ..db.lpm import LpmTable
from ..wire.address import Address
from ..wire.control import MapReply
from ..wire.enums import Action, MessageType
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord, LocatorRecord
from .engine import Endpoint, Event, IPAddr

if TYPE_CHECKING:
    from .fastpath import PeekedRequest

NEGATIVE_TTL_MIN = 15
"""Negative Map-Reply TTL for non-EID space (spec 11.2)."""
UNREGISTERED_TTL_MIN = 1
"""Negative Map-Reply TTL for configured but unregistered EIDs (spec 11.3)."""



def msg_name(t: int) -> str:
    """``map-register`` style name of a message type."""
    return _MSG_NAMES[t] if 0 <= t < 16 else MessageType(t).name.lower().replace("_", "-")


_MSG_NAMES = tuple(MessageType(t).name.lower().replace("_", "-") for t in range(16))


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteRegistered(Event):
    """A registration was installed or its content (locators, flags) changed."""

    site: str
    prefix: EidPrefix
    etr: Endpoint
    xtr_id: int | None
    locators: tuple[LocatorRecord, ...]
    new: bool
    """True for a new registrant, False for a changed one."""


@dataclass(frozen=True, slots=True)
class RegistrationExpired(Event):
    """A registration was not refreshed in time and was removed."""

    site: str | None
    prefix: EidPrefix
    etr: Endpoint | None
    xtr_id: int | None


@dataclass(frozen=True, slots=True)
class RegistrationWithdrawn(Event):
    """A registration was removed by a TTL-0 Map-Register or a site change/deletion."""

    site: str | None
    prefix: EidPrefix
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationRejected(Event):
    """A Map-Register (or one of its records) was refused."""

    site: str | None
    reason: str
    source: Endpoint
    prefix: EidPrefix | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SiteChanged(Event):
    """A site or static mapping was added, replaced or deleted through the service API."""

    kind: str
    """"site" or "static-mapping"."""
    name: str
    action: str
    """"added", "replaced", "deleted"."""


# --- bookkeeping ---------------------------------------------------------------------------


@dataclass(slots=True)
class Rejection:
    """Count and last offender of one (site, reason)."""

    site: str | None
    reason: str
    count: int = 0
    last_source: Endpoint | None = None
    last_prefix: EidPrefix | None = None
    last_time: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "reason": self.reason,
            "count": self.count,
            "last-source": str(self.last_source) if self.last_source else None,
            "last-eid": str(self.last_prefix) if self.last_prefix else None,
            "last-time": self.last_time,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Counters:
    """Message and outcome counters of a mapping-system engine (``as_dict`` for the API)."""

    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    decode_errors: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    """Map-Request outcomes: proxy-reply, forwarded-to-etr, negative-15, negative-1, ..."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Datagrams dropped after decoding, by reason."""
    registrations: Counter[str] = field(default_factory=Counter)
    """accepted, refreshed, new, withdrawn, expired."""

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "messages-in": dict(self.messages_in),
            "messages-out": dict(self.messages_out),
            "decode-errors": dict(self.decode_errors),
            "rejections": dict(self.rejections),
            "requests": dict(self.requests),
            "dropped": dict(self.dropped),
            "registrations": dict(self.registrations),
        }


def choose_itr_rloc(itr_rlocs: Iterable[Address], prefer_version: int) -> IPAddr | None:
    """The first IPv4/IPv6 ITR-RLOC of ``prefer_version``, else the first IP one."""
    first: IPAddr | None = None
    for a in itr_rlocs:
        if isinstance(a, IPv4Address | IPv6Address) and not a.is_unspecified:
            if a.version == prefer_version:
                return a
            if first is None:
                first = a
    return first


class NegativeReplyCache:
    """Encoded negative Map-Replies keyed by (prefix, ttl, action), nonce zero; bounded."""

    __slots__ = ("_cache", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self._cache: dict[tuple[EidPrefix, int, int], bytes] = {}
        self.limit = limit

    def reply(self, nonce: int, prefix: EidPrefix, ttl: int, action: Action) -> bytes:
        key = (prefix, ttl, int(action))
        tmpl = self._cache.get(key)
        if tmpl is None:
            rec = EidRecord.for_prefix(prefix, (), ttl=ttl, action=action, authoritative=False)
            tmpl = MapReply(0, (rec,)).to_bytes()
            if len(self._cache) >= self.limit:
                self._cache.clear()
            self._cache[key] = tmpl
        return tmpl[:4] + nonce.to_bytes(8, "big") + tmpl[12:]

    def echo_reply(self, nonce: int, eid: Address, mask_len: int, ttl: int, action: Action) -> bytes:
        """A negative reply echoing a requested EID that is not a prefix (e.g. an LCAF)."""
        rec = EidRecord(eid, mask_len, (), ttl=ttl, action=action, authoritative=False)
        return MapReply(nonce, (rec,)).to_bytes()


REFRESH_CACHE_MIN = 262_144
INTERN_MAX = 262_144
"""Distinct shared locator sets / ETR addresses kept for interning."""
NEGATIVE_FAST_MAX = 65_536
"""Negative prefixes remembered by the request fast path before it starts over."""


@dataclass(frozen=True, slots=True)
class MapServerConfig:
    """Map-Server knobs (``config.model.MapServerOptions`` / ``MapResolverOptions`` map onto these)."""

    registration_timeout_s: float = 180.0
    """Removal of a registration not refreshed (T bit clear)."""
    max_registrations: int = 2_000_000
    """Upper bound on registrations (a hostile ETR cannot exhaust memory)."""
    proxy_reply_ttl: int | None = None
    """Override the TTL (minutes) of proxy Map-Replies; None = the registered TTL."""
    negative_ttl: int = NEGATIVE_TTL_MIN
    """TTL (minutes) of negative replies for non-EID space."""
    unregistered_ttl: int = UNREGISTERED_TTL_MIN
    """TTL (minutes) of negative replies for configured but unregistered EIDs."""
    negative_action: Action = Action.NATIVELY_FORWARD
    """ACT of negative replies for non-EID space."""
    map_request_rate: float = 1000.0
    """Map-Requests per second per source (0 = unlimited)."""
    map_request_burst: float | None = None
    """Bucket size (None = one second's worth of ``map_request_rate``)."""
    rate_limit_sources: int = 65536
    """Sources tracked by the rate limiter."""
    accept_plain_requests: bool = True
    """Answer Map-Requests that are not encapsulated (OOR's MS drops them; we answer)."""
    notify_xtr_id_flagged: bool = False
    """Set the I bit when a Map-Notify carries the registrant's xTR-ID; lispers.net sends it unflagged."""
    max_pending_sends: int = 100_000
    """Bound on queued datagrams between two ``poll_sends``."""
    max_pending_events: int = 10_000
    """Bound on queued events between two ``poll_events``."""
    register_fast_path: bool = True
    """Read common-shape Map-Registers from their bytes and refresh unchanged
    registrations without decoding (``core/regfast.py``); False = always the general
    decoder (same results, slower: kept for comparison tests)."""


__all__ = ["Counters", "NEGATIVE_TTL_MIN", "NegativeReplyCache", "RegistrationExpired", "RegistrationRejected", "RegistrationWithdrawn", "Rejection", "SiteChanged", "SiteRegistered", "UNREGISTERED_TTL_MIN", "choose_itr_rloc", "msg_name"]


class NegativeFastCache:
    """Negative prefixes already answered -> (reply template with nonce 0, unregistered?).

    Every EID inside an answered negative prefix gets the same answer (it is the
    least-specific prefix overlapping nothing), so the request fast paths look here
    first.  Valid while ``key`` (registered and configured prefix-set versions) is
    unchanged; only host EIDs seed it, since a shorter requested prefix may straddle a
    registration."""

    __slots__ = ("_table", "_key")

    def __init__(self) -> None:
        self._table: LpmTable[tuple[bytes, bool]] = LpmTable()
        self._key = (-1, -1)

    def reply(
        self,
        key: tuple[int, int],
        p: PeekedRequest,
        negative_for: Callable[[EidPrefix], tuple[EidPrefix, int, Action, bool]],
        neg: NegativeReplyCache,
        counters: Counters,
    ) -> bytes:
        """The negative Map-Reply for ``p`` (nonce spliced in), counted by outcome."""
        if key != self._key or len(self._table) >= NEGATIVE_FAST_MAX:
            self._table = LpmTable()
            self._key = key
        hit = self._table.lookup_int(p.iid, p.afi, p.eid, p.mask_len)
        if hit is None:
            addr = IPv4Address(p.eid) if p.afi == 1 else IPv6Address(p.eid)
            prefix, ttl, action, unregistered = negative_for(EidPrefix(p.iid, addr, p.mask_len))
            hit = (neg.reply(0, prefix, ttl, action), unregistered)
            if p.mask_len == (32 if p.afi == 1 else 128):
                self._table.insert(prefix, hit)
        tmpl, unregistered = hit
        counters.requests["negative-unregistered" if unregistered else "negative-non-eid"] += 1
        return tmpl[:4] + p.nonce.to_bytes(8, "big") + tmpl[12:]
