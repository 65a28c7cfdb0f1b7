"""The ETR engine (RFC 9301 sections 5.6-5.7, 8.2; our spec control-plane.md 11.3, 11.6).

Narrative.  An ETR owns its site's *database-mappings*: EID prefixes (per instance-id)
and the RLOCs that reach them, each with priority and weight.  It keeps them registered:

* every ``register_interval_s`` (60 s) it sends one authenticated Map-Register to every
  configured Map-Server, with want-map-notify set and a fresh nonce per Map-Server;
* until the matching Map-Notify arrives it retransmits that Map-Register (same nonce,
  backoff from 1 s to 8 s); a Map-Notify is accepted only when it comes with the nonce of
  the outstanding Map-Register *and* verifies with that Map-Server's key - anything else is
  counted and ignored;
* a registration is considered lost when a whole interval passes without a Map-Notify.

It answers Map-Requests for its EIDs with authoritative Map-Replies (A = 1): those the
Map-Server forwards inside an ECM, and RLOC-probes (P = 1), sent straight to an RLOC;
a probe reply marks the locator that received it with the p flag.  The reply goes to the
first ITR-RLOC of a family we have an RLOC of, at the request's (inner) source port.

Decapsulation itself is the data plane's job; this engine gives it the locator-status
bits of the local site (``lsb``) and the instance table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from ..wire.address import Address
from ..wire.control import Ecm, MapNotify, MapRegister, MapReply, MapRequest, parse_control
from ..wire.enums import AuthAlg
from ..wire.errors import DecodeError
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord, LocatorRecord
from .engine import CONTROL_PORT, Endpoint, Event, IPAddr, Send

log = logging.getLogger(__name__)

NonceSource = Callable[[], int]


@dataclass(frozen=True, slots=True)
class DatabaseMapping:
    """One EID prefix of the site and its locator set."""

    prefix: EidPrefix
    """EID prefix (instance-id included)."""
    locators: tuple[LocatorRecord, ...]
    """The site's RLOCs for this prefix, in LSB order."""
    ttl_minutes: int = 1440
    """Record TTL announced in Map-Replies."""


@dataclass(frozen=True, slots=True)
class MapServerPeer:
    """A Map-Server the ETR registers with."""

    address: IPAddr
    """The Map-Server."""
    key: bytes
    """Pre-shared authentication key."""
    key_id: int = 0
    """Key-ID field."""
    alg_id: AuthAlg = AuthAlg.HMAC_SHA_256_128
    """HMAC algorithm."""
    proxy_reply: bool = False
    """Ask the Map-Server to answer Map-Requests for us (P bit)."""


@dataclass(frozen=True, slots=True)
class EtrConfig:
    """The ETR's configuration."""

    mappings: tuple[DatabaseMapping, ...]
    """The site's database-mappings."""
    map_servers: tuple[MapServerPeer, ...]
    """Where to register."""
    rlocs: tuple[IPAddr, ...] = ()
    """Our own RLOCs (source of replies and registrations)."""
    register_interval_s: float = 60.0
    """Map-Register period (RFC 9301: 60 s)."""
    retransmit_s: float = 1.0
    """First Map-Register retransmit timeout without a Map-Notify."""
    max_retransmit_s: float = 8.0
    """Cap of the retransmit backoff."""
    merge: bool = False
    """Set the M (merge) bit in Map-Registers."""
    xtr_id: int | None = None
    """128-bit xTR-ID sent with registrations (I bit)."""
    site_id: int | None = None
    """64-bit site-ID sent with the xTR-ID."""


# --- events ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EtrRegistered(Event):
    """A Map-Server confirmed the registration with a valid Map-Notify."""

    map_server: IPAddr
    records: int


@dataclass(frozen=True, slots=True)
class EtrRegistrationLost(Event):
    """No Map-Notify for a whole registration interval."""

    map_server: IPAddr


@dataclass(slots=True)
class _MsState:
    peer: MapServerPeer
    nonce: int | None = None
    message: bytes = b""
    sent_at: float = 0.0
    attempts: int = 0
    retransmit_at: float | None = None
    next_register_at: float = 0.0
    registered: bool = False
    registered_at: float | None = None
    last_notify_at: float | None = None
    last_register_at: float | None = None


@dataclass(slots=True)
class _Requester:
    rloc: IPAddr
    last_seen: float
    eids: set[str] = field(default_factory=set)


class EtrEngine:
    """Sans-I/O ETR: registration cycle and authoritative Map-Replies."""

    def __init__(self, config: EtrConfig, nonce_source: NonceSource, now: float = 0.0) -> None:
        self.config = config
        self._nonce = nonce_source
        self._ms = {p.address: _MsState(p, next_register_at=now) for p in config.map_servers}
        self._sends: list[Send] = []
        self._events: list[Event] = []
        self.counters: dict[str, int] = {}
        self.requesters: dict[IPAddr, _Requester] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # --- local mapping state ------------------------------------------------------------
    @property
    def mappings(self) -> tuple[DatabaseMapping, ...]:
        return self.config.mappings

    def lsb(self, iid: int = 0) -> int:
        """Locator-status-bits of the local site: bit k = k-th RLOC of our set is up."""
        best: tuple[LocatorRecord, ...] = ()
        for m in self.config.mappings:
            if m.prefix.iid == iid and len(m.locators) > len(best):
                best = m.locators
        bits = 0
        for i, loc in enumerate(best[:32]):
            if loc.reachable and loc.priority != 255:
                bits |= 1 << i
        return bits

    def set_mappings(self, mappings: tuple[DatabaseMapping, ...], now: float) -> None:
        """Replace the database-mappings and re-register at once."""
        self.config = replace(self.config, mappings=mappings)
        for st in self._ms.values():
            st.next_register_at = now
            st.retransmit_at = None
            st.nonce = None

    def lookup(self, prefix: EidPrefix) -> DatabaseMapping | None:
        """The database-mapping covering ``prefix`` (longest)."""
        best: DatabaseMapping | None = None
        for m in self.config.mappings:
            if m.prefix.contains(prefix) and (best is None or m.prefix.mask_len > best.prefix.mask_len):
                best = m
        return best

    def _records(self, probed_rloc: IPAddr | None = None) -> tuple[EidRecord, ...]:
        return tuple(self._record(m, authoritative=True, probed_rloc=probed_rloc) for m in self.config.mappings)

    def _record(self, m: DatabaseMapping, authoritative: bool, probed_rloc: IPAddr | None = None) -> EidRecord:
        locs = tuple(
            replace(loc, local=loc.address in self.config.rlocs or not self.config.rlocs, probed=loc.address == probed_rloc)
            for loc in m.locators
        )
        return EidRecord.for_prefix(m.prefix, locs, ttl=m.ttl_minutes, authoritative=authoritative)

    # --- registration --------------------------------------------------------------------
    def _register(self, st: _MsState, now: float) -> None:

        if st.nonce is None:
            st.nonce = self._nonce() & 0xFFFFFFFFFFFFFFFF
            st.attempts = 0
            msg = MapRegister(
                nonce=st.nonce,
                records=self._records(),
                key_id=st.peer.key_id,
                alg_id=st.peer.alg_id,
                proxy_reply=st.peer.proxy_reply,
                want_map_notify=True,
                merge=self.config.merge,
                xtr_id=self.config.xtr_id,
                site_id=self.config.site_id if self.config.xtr_id is not None else None,
            ).signed(st.peer.key)
            st.message = msg.to_bytes()
        st.attempts += 1
        st.sent_at = now
        st.last_register_at = now
        self._sends.append(Send(st.message, Endpoint(st.peer.address, CONTROL_PORT), self._src_for(st.peer.address)))
        self._count("map-registers-sent")
        if st.attempts > 1:
            self._count("map-register-retransmits")
        backoff = min(self.config.retransmit_s * 2 ** (st.attempts - 1), self.config.max_retransmit_s)
        st.retransmit_at = now + backoff

    def _src_for(self, dst: IPAddr) -> Endpoint | None:
        """None: the shell's control socket of ``dst``'s family (port 4342)."""
        return None

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for st in self._ms.values():
            times.append(st.next_register_at)
            if st.retransmit_at is not None:
                times.append(st.retransmit_at)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        for st in self._ms.values():
            if st.next_register_at <= now:
                # a new registration round: a new nonce, even if the previous one is unanswered
                if st.registered and (st.last_notify_at is None or now - st.last_notify_at > self.config.register_interval_s * 1.5):
                    st.registered = False
                    self._events.append(EtrRegistrationLost(st.peer.address))
                st.nonce = None
                st.next_register_at = now + self.config.register_interval_s
                self._register(st, now)
            elif st.retransmit_at is not None and st.retransmit_at <= now:
                self._register(st, now)

    # --- control messages -------------------------------------------------------------
    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:

        try:
            msg = parse_control(datagram)
        except DecodeError as e:
            self._count(f"decode-error-{getattr(e, 'reason', 'other')}")
            return
        if isinstance(msg, Ecm):
            inner = msg.message
            if isinstance(inner, MapRequest):
                self.on_map_request(inner, Endpoint(msg.inner_src, msg.inner_sport), dst.address, now)
            else:
                self._count("ignored-ecm")
        elif isinstance(msg, MapRequest):
            self.on_map_request(msg, src, dst.address, now)
        elif isinstance(msg, MapNotify):
            self.on_map_notify(msg, src, now)
        else:
            self._count("ignored-message")

    def on_map_notify(self, notify: MapNotify, src: Endpoint, now: float) -> None:

        st = self._ms.get(src.address)
        if st is None:
            # accept from any configured MS whose outstanding nonce matches (multi-homed MS)
            st = next((s for s in self._ms.values() if s.nonce == notify.nonce), None)
        if st is None:
            self._count("map-notify-unknown-source")
            return
        if st.nonce is None or notify.nonce != st.nonce:
            self._count("map-notify-bad-nonce")
            return
        if not notify.verify(st.peer.key):
            self._count("map-notify-auth-failure")
            return
        self._count("map-notifies")
        st.retransmit_at = None
        st.nonce = None
        st.last_notify_at = now
        st.registered_at = now
        if not st.registered:
            st.registered = True
        self._events.append(EtrRegistered(st.peer.address, len(notify.records)))

    def on_map_request(self, request: MapRequest, reply_to: Endpoint, local_rloc: IPAddr, now: float) -> None:
        """Answer a Map-Request (ECM'd by the MS, or an RLOC-probe) for our EIDs."""

        if request.smr:
            self._count("smr-ignored-by-etr")  # the co-located ITR handles SMRs
            return
        self._count("rloc-probes" if request.probe else "map-requests")
        records: list[EidRecord] = []
        for rr in request.records:
            try:
                prefix = rr.prefix
            except ValueError:
                continue
            m = self.lookup(prefix)
            if m is None:
                continue
            records.append(self._record(m, authoritative=True, probed_rloc=local_rloc if request.probe else None))
        if not records:
            self._count("map-request-not-ours")
            return
        if request.dont_map_reply:
            return
        target = self._reply_rloc(request.itr_rlocs)
        if target is None:
            self._count("map-request-no-usable-itr-rloc")
            return
        self._remember(target, request.source_eid, now)
        reply = MapReply(nonce=request.nonce, records=tuple(records), probe=request.probe)
        port = reply_to.port or CONTROL_PORT
        self._sends.append(Send(reply.to_bytes(), Endpoint(target, port), self._src_for(target)))
        self._count("map-replies-sent")

    def _reply_rloc(self, itr_rlocs: tuple[Address, ...]) -> IPAddr | None:
        ips = [a for a in itr_rlocs if isinstance(a, IPv4Address | IPv6Address)]
        families = {r.version for r in self.config.rlocs}
        for a in ips:
            if not families or a.version in families:
                return a
        return ips[0] if ips else None

    def _remember(self, rloc: IPAddr, source_eid: Address, now: float) -> None:
        r = self.requesters.get(rloc)
        if r is None:
            if len(self.requesters) >= 1000:
                oldest = min(self.requesters.values(), key=lambda x: x.last_seen)
                del self.requesters[oldest.rloc]
            r = self.requesters[rloc] = _Requester(rloc, now)
        r.last_seen = now
        r.eids.add(str(source_eid))

    # --- Engine surface -------------------------------------------------------------------
    def poll_sends(self, now: float) -> list[Send]:
        out, self._sends = self._sends, []
        return out

    def poll_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # --- views ------------------------------------------------------------------------------
    def registration_status(self) -> list[dict[str, object]]:
        return [
            {
                "map_server": str(st.peer.address),
                "registered": st.registered,
                "registered_at": st.registered_at,
                "last_register_at": st.last_register_at,
                "outstanding": st.nonce is not None,
                "attempts": st.attempts,
            }
            for st in self._ms.values()
        ]

    @property
    def registered(self) -> bool:
        """Every Map-Server confirmed our registration."""
        return bool(self._ms) and all(st.registered for st in self._ms.values())


__all__ = [
    "DatabaseMapping",
    "EtrConfig",
    "EtrEngine",
    "EtrRegistered",
    "EtrRegistrationLost",
    "MapServerPeer",
]
