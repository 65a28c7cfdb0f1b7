"""The ITR engine (RFC 9300 section 6, RFC 9301 sections 5.1 and 11.1 of our spec).

Narrative.  The data plane looks a packet's destination up in its own forwarding table;
when nothing matches it punts the packet here (``handle_miss``).  The ITR then:

1. checks its map-cache (the data plane may simply not have heard of an entry yet);
2. otherwise files the packet in a small per-EID queue and opens a *pending request*
   for the destination EID: at most one outstanding Map-Request per EID, however many
   packets miss;
3. sends the Map-Request inside an ECM to a Map-Resolver, when the global rate limiter
   allows (a minimum spacing between Map-Requests);
4. retransmits on timeout with exponential backoff, each time to the *next* configured
   resolver (failover), and gives up after ``max_attempts``: queued packets are dropped
   and the EID is held down for ``holddown_s`` so a dead mapping system is not hammered;
5. on a Map-Reply whose nonce matches, installs every record in the map-cache, emits
   ``MappingInstalled`` (the data plane installs a forwarding entry) and releases the
   queued packets with ``PacketsReleased`` so the daemon re-injects them.

Negative records carry an action: natively-forward (or, with PETRs configured, send to
the PETR, RFC 6832), drop, or send-map-request.  Entries expire by TTL at ``now``
driven from outside (``on_timer``) and are withdrawn with ``MappingRemoved``.

An SMR (a Map-Request with S set, spec section 11.5) is never trusted: it triggers an
SMR-invoked Map-Request through the mapping system for the prefix it names.  Received
locator-status-bits (``apply_lsb``) only mark locators of the source site *down*, and
bring back only those that LSBs took down (spec data-plane.md section 3).

A PITR is this same engine with ``pitr=True``: its Map-Requests carry the p bit, and its
source EID is not an EID (see ``core/pxtr.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from ..dataplane.base import FwdEntry, FwdLocator
from ..db.map_cache import MapCache, MapCacheEntry
from ..wire.address import NO_ADDRESS, Address
from ..wire.control import Ecm, MapReply, MapRequest, RequestRecord, parse_control
from ..wire.enums import Action
from ..wire.errors import DecodeError
from ..wire.lcaf import LcafInstanceId
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord, LocatorRecord
from .engine import CONTROL_PORT, Endpoint, Event, IPAddr, Send

log = logging.getLogger(__name__)

NonceSource = Callable[[], int]


@dataclass(frozen=True, slots=True)
class ItrConfig:
    """What an ITR (or PITR) needs to resolve and encapsulate."""

    map_resolvers: tuple[IPAddr, ...]
    """Map-Resolvers in failover order."""
    itr_rlocs: tuple[IPAddr, ...]
    """Our RLOCs, listed as ITR-RLOCs in Map-Requests (where Map-Replies come back)."""
    petrs: tuple[IPAddr, ...] = ()
    """Proxy-ETRs for traffic to non-EID destinations (negative natively-forward)."""
    pitr: bool = False
    """Set the p bit: we are a PITR and our source addresses are not EIDs."""
    max_entries: int = 10000
    """Map-cache bound (LRU eviction beyond it)."""
    queue_len: int = 16
    """Packets kept per pending EID until its mapping arrives."""
    request_timeout_s: float = 1.0
    """First retransmit timeout; doubles each attempt."""
    max_timeout_s: float = 8.0
    """Cap of the retransmit timeout."""
    max_attempts: int = 5
    """Map-Request transmissions per resolution before giving up."""
    min_request_interval_s: float = 0.01
    """Global rate limit: minimum spacing between two Map-Requests."""
    holddown_s: float = 3.0
    """After a failed resolution, further misses for that EID are dropped for this long."""
    petr_ttl_minutes: int = 1
    """TTL of the PETR entry installed when the ITR uses a PETR without asking."""


# --- events -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MappingInstalled(Event):
    """A map-cache entry was added or changed; ``entry`` is the data-plane view."""

    entry: FwdEntry
    ttl_minutes: int


@dataclass(frozen=True, slots=True)
class MappingRemoved(Event):
    """A map-cache entry expired, was evicted or withdrawn."""

    prefix: EidPrefix
    reason: str


@dataclass(frozen=True, slots=True)
class PacketsReleased(Event):
    """Packets that waited for a mapping; the daemon hands them back to the data plane."""

    iid: int
    packets: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MapRequestSent(Event):
    """A Map-Request left for ``resolver`` (attempt 1 = first transmission)."""

    eid: EidPrefix
    resolver: IPAddr
    attempt: int


@dataclass(frozen=True, slots=True)
class ResolutionFailed(Event):
    """No Map-Reply after every attempt."""

    eid: EidPrefix
    dropped: int


@dataclass(slots=True)
class _Pending:
    eid: EidPrefix
    source: IPAddr | None
    nonce: int
    attempts: int = 0
    next_at: float = 0.0
    queue: list[bytes] = field(default_factory=list)
    smr_invoked: bool = False
    first_at: float = 0.0
    resolver_index: int = 0


def to_fwd_entry(entry: MapCacheEntry, petrs: tuple[IPAddr, ...] = ()) -> FwdEntry:
    """The data-plane view of a map-cache entry."""
    if entry.locators:
        locs = tuple(
            FwdLocator(c.record.address, c.record.priority, c.record.weight, c.up)
            for c in entry.locators
            if isinstance(c.record.address, IPv4Address | IPv6Address)
        )
        return FwdEntry(entry.prefix, locs, Action.NO_ACTION, False)
    if entry.action == Action.NATIVELY_FORWARD and petrs:
        return FwdEntry(entry.prefix, tuple(FwdLocator(p) for p in petrs), entry.action, True)
    return FwdEntry(entry.prefix, (), entry.action, False)


def _ip_of(addr: Address) -> IPAddr | None:
    if isinstance(addr, IPv4Address | IPv6Address):
        return addr
    if isinstance(addr, LcafInstanceId) and isinstance(addr.address, IPv4Address | IPv6Address):
        return addr.address
    return None


class ItrEngine:
    """Sans-I/O ITR: map-cache, Map-Request resolution, packet queue."""

    def __init__(self, config: ItrConfig, nonce_source: NonceSource) -> None:
        self.config = config
        self._nonce = nonce_source
        self.map_cache = MapCache(config.max_entries)
        self._pending: dict[EidPrefix, _Pending] = {}
        self._by_nonce: dict[int, _Pending] = {}
        self._holddown: dict[EidPrefix, float] = {}
        self._next_request_at = 0.0
        self._resolver_index = 0
        self._sends: list[Send] = []
        self._events: list[Event] = []
        self.counters: dict[str, int] = {}

    # --- helpers --------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _emit_install(self, entry: MapCacheEntry) -> None:
        self._events.append(MappingInstalled(to_fwd_entry(entry, self.config.petrs), entry.ttl_minutes))

    # --- data-plane punts -------------------------------------------------------------
    def handle_miss(self, iid: int, src: IPAddr | None, dst: IPAddr, packet: bytes, now: float) -> None:
        """A packet to ``dst`` in ``iid`` found no forwarding entry."""
        self._count("misses")
        entry = self.map_cache.lookup(iid, dst, now)
        if entry is not None and not (entry.is_negative and entry.action == Action.SEND_MAP_REQUEST):
            # the data plane lags behind us: re-announce the entry and hand the packet back
            self._emit_install(entry)
            if packet:
                self._events.append(PacketsReleased(iid, (packet,)))
            return
        eid = EidPrefix.host(dst, iid)
        until = self._holddown.get(eid)
        if until is not None:
            if now < until:
                self._count("drop-holddown")
                return
            del self._holddown[eid]
        pending = self._pending.get(eid)
        if pending is None:
            pending = self._open(eid, src, now)
        if packet:
            if len(pending.queue) < self.config.queue_len:
                pending.queue.append(packet)
                self._count("queued")
            else:
                self._count("drop-queue-full")

    def _open(self, eid: EidPrefix, src: IPAddr | None, now: float, smr_invoked: bool = False) -> _Pending:
        pending = _Pending(eid, src, self._fresh_nonce(), next_at=max(now, self._next_request_at), first_at=now)
        pending.smr_invoked = smr_invoked
        self._pending[eid] = pending
        self._by_nonce[pending.nonce] = pending
        if pending.next_at <= now:
            self._transmit(pending, now)
        else:
            self._count("request-rate-limited")
        return pending

    def _fresh_nonce(self) -> int:
        while True:
            n = self._nonce() & 0xFFFFFFFFFFFFFFFF
            if n not in self._by_nonce:
                return n

    def _transmit(self, pending: _Pending, now: float) -> None:

        resolvers = self.config.map_resolvers
        if not resolvers:
            self._count("drop-no-map-resolver")
            pending.next_at = float("inf")
            return
        # failover: attempt k goes k resolvers past the preferred one (the last that answered)
        pending.resolver_index = (self._resolver_index + pending.attempts) % len(resolvers)
        resolver = resolvers[pending.resolver_index]
        pending.attempts += 1
        eid = pending.eid
        src = pending.source
        if src is not None and src.version != eid.address.version:  # type: ignore[union-attr]
            src = None
        source_eid: Address = NO_ADDRESS
        if src is not None and not self.config.pitr:
            source_eid = LcafInstanceId(eid.iid, src) if eid.iid else src
        request = MapRequest(
            nonce=pending.nonce,
            source_eid=source_eid,
            itr_rlocs=self.config.itr_rlocs,
            records=(RequestRecord(eid.to_wire_eid(), eid.mask_len),),
            pitr=self.config.pitr,
            smr_invoked=pending.smr_invoked,
        )
        dst_eid = eid.address
        assert isinstance(dst_eid, IPv4Address | IPv6Address)
        inner_src: IPAddr | None = src
        if inner_src is None:
            inner_src = next((r for r in self.config.itr_rlocs if r.version == dst_eid.version), None)
        if inner_src is None:
            inner_src = IPv4Address(0) if dst_eid.version == 4 else IPv6Address(0)
        ecm = Ecm(message=request, inner_src=inner_src, inner_dst=dst_eid, inner_sport=CONTROL_PORT)
        self._sends.append(Send(ecm.to_bytes(), Endpoint(resolver, CONTROL_PORT)))
        self._events.append(MapRequestSent(eid, resolver, pending.attempts))
        self._count("map-requests-sent")
        if pending.attempts > 1:
            self._count("map-request-retransmits")
        timeout = min(self.config.request_timeout_s * (2 ** (pending.attempts - 1)), self.config.max_timeout_s)
        pending.next_at = now + timeout
        self._next_request_at = now + self.config.min_request_interval_s

    # --- control messages --------------------------------------------------------------
    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:

        try:
            msg = parse_control(datagram)
        except DecodeError as e:
            self._count(f"decode-error-{getattr(e, 'reason', 'other')}")
            return
        if isinstance(msg, MapReply):
            self.on_map_reply(msg, src, now)
        elif isinstance(msg, MapRequest) and msg.smr:
            self.on_smr(msg, src, now)
        else:
            self._count("ignored-message")

    def on_map_reply(self, reply: MapReply, src: Endpoint, now: float) -> None:

        pending = self._by_nonce.pop(reply.nonce, None)
        if pending is None:
            self._count("map-reply-unknown-nonce")
            return
        self._pending.pop(pending.eid, None)
        self._resolver_index = pending.resolver_index  # stick to a resolver that works
        self._count("map-replies")
        covered = False
        for record in reply.records:
            try:
                prefix = record.prefix
            except ValueError:
                self._count("map-reply-bad-record")
                continue
            if prefix.iid != pending.eid.iid and not prefix.iid and isinstance(record.eid, IPv4Address | IPv6Address):
                # a peer that dropped the IID LCAF: keep the instance we asked for
                prefix = EidPrefix(pending.eid.iid, prefix.address, prefix.mask_len)
            self.install_record(record, now, prefix=prefix)
            covered = covered or prefix.contains(pending.eid)
        if pending.queue:
            self._events.append(PacketsReleased(pending.eid.iid, tuple(pending.queue)))
            self._count("released", len(pending.queue))
        if not covered:
            self._count("map-reply-not-covering")

    def install_record(self, record: EidRecord, now: float, prefix: EidPrefix | None = None) -> MapCacheEntry | None:
        """Put one mapping record in the map-cache (TTL 0 withdraws)."""
        prefix = (prefix or record.prefix).masked()
        if record.ttl == 0:
            if self.map_cache.remove(prefix) is not None:
                self._events.append(MappingRemoved(prefix, "ttl-0"))
            return None
        action = record.action
        if record.is_negative and int(action) > int(Action.DROP_AUTH_FAILURE):
            action = Action.DROP  # unknown actions mean drop (spec section 9)
        entry, evicted = self.map_cache.install(
            prefix,
            record.locators,
            record.ttl,
            now,
            action=action,
            authoritative=record.authoritative,
            map_version=record.map_version,
        )
        for gone in evicted:
            self._count("map-cache-evictions")
            self._events.append(MappingRemoved(gone.prefix, "evicted"))
        self._emit_install(entry)
        return entry

    def on_smr(self, request: MapRequest, src: Endpoint, now: float) -> None:
        """RFC 9301 section 6.1 (our spec 11.5): re-ask the mapping system, never the sender."""

        self._count("smr-received")
        target = _ip_of(request.source_eid)
        if target is None:
            return
        iid = request.source_eid.iid if isinstance(request.source_eid, LcafInstanceId) else 0
        entry = self.map_cache.lookup(iid, target)
        if entry is None:
            return
        eid = EidPrefix.host(target, iid)
        if eid not in self._pending:
            self._open(eid, None, now, smr_invoked=True)

    def apply_lsb(self, iid: int, source_eid: IPAddr, lsb: int, now: float) -> bool:
        """Locator-status-bits received from the site of ``source_eid``; True on a change."""
        entry = self.map_cache.lookup(iid, source_eid)
        if entry is None or entry.is_negative:
            return False
        changed = False
        for i in range(min(len(entry.locators), 32 if iid == 0 else 8)):
            up = bool(lsb >> i & 1)
            changed |= self.map_cache.set_locator_state(entry.prefix, i, up, by_lsb=True)
        if changed:
            self._count("lsb-changes")
            self._emit_install(entry)
        return changed

    def set_locator_reachability(self, prefix: EidPrefix, rloc: IPAddr, up: bool) -> None:
        """RLOC-probing or an operator marks an RLOC of ``prefix`` up/down."""
        entry = self.map_cache.get(prefix)
        if entry is None:
            return
        for i, loc in enumerate(entry.locators):
            if loc.record.address == rloc and self.map_cache.set_locator_state(prefix, i, up):
                self._emit_install(entry)

    def add_static(self, prefix: EidPrefix, locators: list[LocatorRecord], now: float) -> None:
        """A configured map-cache entry (never expires in practice)."""
        entry, _ = self.map_cache.install(prefix, locators, 0xFFFFFFFF, now, source="static")
        self._emit_install(entry)

    # --- timers ---------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [p.next_at for p in self._pending.values() if p.next_at != float("inf")]
        exp = self.map_cache.next_expiry()
        if exp is not None:
            times.append(exp)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        for entry in self.map_cache.expire(now):
            self._events.append(MappingRemoved(entry.prefix, "expired"))
            self._count("map-cache-expired")
        for pending in list(self._pending.values()):
            if pending.next_at > now:
                continue
            if pending.attempts >= self.config.max_attempts:
                self._give_up(pending, now)
                continue
            if now < self._next_request_at:
                pending.next_at = self._next_request_at
                self._count("request-rate-limited")
                continue
            self._transmit(pending, now)

    def _give_up(self, pending: _Pending, now: float) -> None:
        self._pending.pop(pending.eid, None)
        self._by_nonce.pop(pending.nonce, None)
        self._holddown[pending.eid] = now + self.config.holddown_s
        self._count("resolution-failed")
        self._count("drop-resolution-failed", len(pending.queue))
        self._events.append(ResolutionFailed(pending.eid, len(pending.queue)))

    # --- Engine surface ----------------------------------------------------------------
    def poll_sends(self, now: float) -> list[Send]:
        out, self._sends = self._sends, []
        return out

    def poll_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # --- views -------------------------------------------------------------------------
    def pending_requests(self) -> list[dict[str, object]]:
        return [
            {"eid": str(p.eid), "attempts": p.attempts, "queued": len(p.queue), "next_at": p.next_at}
            for p in self._pending.values()
        ]


__all__ = [
    "ItrConfig",
    "ItrEngine",
    "MappingInstalled",
    "MappingRemoved",
    "MapRequestSent",
    "PacketsReleased",
    "ResolutionFailed",
    "to_fwd_entry",
]
