"""The Map-Server as a sans-I/O engine (RFC 9301 sections 8.2-8.4; spec 7, 8, 10, 11.3, 11.4).

What it does
------------
*Registration.*  An ETR sends a Map-Register (UDP to 4342, from any port).  We read
it (``core/regfast.py`` for the common shapes, else the general decoder; the rules are
in ``core/registrar.py``), find the site its EID-records belong to (the configured
prefixes, longest match, plus the Key ID), and check the HMAC on the received bytes (no
re-encoding).  An identical refresh of installed registrations is recognised from the
bytes and only moves their expiry.  Then each record must lie inside the site's prefixes (exactly, or as a
more-specific when the site allows it) and, when the site restricts RLOCs, every IP
locator must be inside the allowed RLOC prefixes.  Accepted records are installed or
refreshed with an expiry: the site timeout (180 s, three 60 s register intervals) or the
record TTL when the T bit is set.  A record TTL of 0 withdraws the registration.  Several
ETRs of one site registering one prefix are kept apart by xTR-ID (or source RLOC without
one) and their locator sets merged (see ``db/sites.py``).  With the M bit we answer a
Map-Notify carrying the same nonce, the accepted records, and the Key ID, algorithm and
authentication length of the Map-Register, sent to the Map-Register's source address
*and port* (lispers.net registers from an ephemeral port and listens there).

Every refusal - ``eid-not-in-any-site``, ``bad-key-id``, ``bad-hmac``,
``eid-outside-site-prefixes``, ``rloc-not-allowed``, ``site-disabled``, ``table-full``,
``malformed`` - is counted per (site, reason), remembered with the last offender
(source, EID, time) for the API, and emitted as :class:`RegistrationRejected`.

*Map-Requests* (inside an ECM from a Map-Resolver or ITR, or plain):

* registered, proxy-reply (P bit, site policy or static mapping): a Map-Reply (A = 0,
  the registered TTL) to the first usable ITR-RLOC (our family first) at the inner UDP
  source port (ECM) or the source port (plain);
* registered without proxy-reply: the request is forwarded in an ECM with the E bit
  (same inner headers: the received ECM with its flag bits changed) to one of the
  registering ETRs' RLOCs on 4342;
* configured but unregistered: negative Map-Reply, TTL 1 minute, the site's action
  (default Natively-Forward), for the least-specific prefix inside the site prefix that
  overlaps no registration;
* neither: negative Map-Reply, TTL 15 minutes, for the shortest non-EID covering prefix
  (``db/negative.py``) over configured and registered prefixes.

An EID of AFI 0 (RLOC-probe style) cannot be answered and is dropped and counted; an
EID of another non-prefix kind (a Multicast-Info LCAF, a name) is answered by exact
match or with a 15-minute negative reply echoing it.  Nothing a peer sends raises:
``receive`` catches :class:`DecodeError`, counts it by reason and drops the datagram.

Map-Requests are rate-limited per source (token bucket); Map-Registers are not, so a
request flood cannot starve registrations.  Sends and events are queued up to a bound.

The hot paths avoid encoding: the Map-Notify for a fully accepted Map-Register is the
received bytes with a new first word and the auth field recomputed; a proxy Map-Reply
is an encoding cached per registered prefix (rebuilt after any change) with the nonce
spliced in; negative replies are cached per (prefix, TTL, action).

Service methods for the REST API (all return JSON-able values): ``list_sites``,
``get_site``, ``add_site``, ``delete_site``, ``add_static_mapping``,
``delete_static_mapping``, ``static_mappings``, ``list_registrations``,
``rejections``, ``counters``, ``snapshot``, ``restore``.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..db.lpm import LpmTable, address_width
from ..db.negative import negative_prefix
from ..db.sites import (
    AllowedPrefix,
    RegisteredPrefix,
    Registration,
    RegistrationTable,
    SitePolicy,
    configured_prefixes,
)
from ..wire.address import NoAddress
from ..wire.control import Ecm, MapReply, MapRequest, parse_control
from ..wire.enums import Action, MessageType
from ..wire.errors import DecodeError
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord
from .engine import CONTROL_PORT, Endpoint, Event, IPAddr, Send
from .expiry import ExpiryBuckets
from .fastpath import PeekedRequest, answer_now_or_slow, peek_map_request
from .map_server_api import MapServerService
from .mapsys import (
    INTERN_MAX,
    NEGATIVE_TTL_MIN,
    UNREGISTERED_TTL_MIN,
    Counters,
    MapServerConfig,
    NegativeFastCache,
    NegativeReplyCache,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationWithdrawn,
    Rejection,
    SiteChanged,
    SiteRegistered,
    choose_itr_rloc,
    msg_name,
)
from .ratelimit import TokenBucketLimiter
from .regfast import Interner, LocatorCache
from .registrar import Registrar

_ECM_E_BYTE = 0x02  # E bit (0x02000000) in byte 0 of the ECM header
_ECM_M_BYTE = 0x01  # M bit (0x01000000)
_ECM_NAME = msg_name(MessageType.ECM)
_ZERO_ADDRESSES = frozenset((bytes(4), bytes(16)))
"""Packed unspecified IPv4/IPv6 addresses (ITR-RLOCs the fast path skips)."""
_REQUEST_NAME = msg_name(MessageType.MAP_REQUEST)
_REGISTER_NAME = msg_name(MessageType.MAP_REGISTER)


class MapServer(Registrar, MapServerService):
    """The Map-Server engine (``core.engine.Engine``) plus its service methods."""

    def __init__(
        self,
        sites: Iterable[SitePolicy] = (),
        config: MapServerConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or MapServerConfig()
        self.rng = rng or random.Random(0)
        self.sites: dict[str, SitePolicy] = {}
        """Configured sites by name."""
        self.configured: LpmTable[list[tuple[SitePolicy, AllowedPrefix]]] = LpmTable()
        """Every site's allowed EID-prefixes (rebuilt on site changes)."""
        self.registrations = RegistrationTable()
        """Registered and static prefixes."""
        self.expiry: ExpiryBuckets[Registration] = ExpiryBuckets()
        """Expiry of every dynamic registration (refreshes only move ``expires_at``)."""
        self.counters = Counters()
        self._rejections: dict[tuple[str | None, str], Rejection] = {}
        self._sends: list[Send] = []
        self._events: list[Event] = []
        self._neg = NegativeReplyCache()
        self._sigs = Interner(INTERN_MAX)
        """Shared registration signatures (``core/regfast.py``)."""
        self._locs = LocatorCache(INTERN_MAX)
        """Locator sections -> shared locator tuples."""
        self._sites_overlap = False
        """Whether two sites configure overlapping prefixes (the identical-refresh
        shortcut then takes the full path, which picks the site by key)."""
        self.register_fast_path = self.config.register_fast_path
        self._conf_version = 0
        self._interned: dict[Any, Any] = {}
        self._negfast = NegativeFastCache()
        self._addr_text: dict[bytes | IPAddr, str] = {}
        self._src_text: dict[int, tuple[Endpoint, str]] = {}
        """Address text of a Map-Register's source Endpoint, by object identity."""
        """Destination address text by packed address / ETR address (``fast_reply``)."""
        c = self.config
        burst = c.map_request_burst if c.map_request_burst is not None else max(1.0, c.map_request_rate)
        self.limiter = TokenBucketLimiter(c.map_request_rate, burst, c.rate_limit_sources)
        for s in sites:
            self.sites[s.name] = s
        self._rebuild_configured()

    # =========================================================================== Engine
    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        """Handle one control datagram; never raises on peer input."""
        if not datagram:
            self.counters.decode_errors["empty"] += 1
            return
        t = datagram[0] >> 4
        try:
            self.counters.messages_in[msg_name(t)] += 1
            if t == MessageType.MAP_REGISTER:
                self._on_map_register(datagram, src, now)
            elif t == MessageType.ECM:
                self._on_ecm(datagram, src, dst, now)
            elif t == MessageType.MAP_REQUEST:
                self._on_plain_request(datagram, src, dst, now)
            elif t == MessageType.MAP_NOTIFY_ACK:
                pass  # lispers.net acks even solicited Map-Notifies; nothing is outstanding
            else:
                self.counters.dropped["unexpected-type"] += 1
        except DecodeError as e:
            self.counters.decode_errors[e.reason] += 1

    def poll_sends(self, now: float) -> list[Send]:
        out, self._sends = self._sends, []
        return out

    def poll_events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        return self.expiry.next_deadline()

    def on_timer(self, now: float) -> None:
        """Expire registrations that were not refreshed."""
        for reg in self.expiry.due(now, self._installed):
            self._remove_registration(reg)
            self.counters.registrations["expired"] += 1
            etr = None if reg.etr is None else Endpoint(reg.etr[0], reg.etr[1])
            self._emit(RegistrationExpired(reg.site, reg.prefix, etr, reg.xtr_id))

    # ======================================================================== helpers
    def _send(self, data: bytes, dst: Endpoint, kind: str) -> None:
        if len(self._sends) >= self.config.max_pending_sends:
            self.counters.dropped["send-queue-full"] += 1
            return
        self._sends.append(Send(data, dst))
        self.counters.messages_out[kind] += 1

    def _emit(self, ev: Event) -> None:
        if len(self._events) >= self.config.max_pending_events:
            self.counters.dropped["event-queue-full"] += 1
            return
        self._events.append(ev)

    def _reject(
        self,
        site: str | None,
        reason: str,
        src: Endpoint,
        prefix: EidPrefix | None,
        now: float,
        detail: str = "",
    ) -> None:
        self.counters.rejections[reason] += 1
        r = self._rejections.get((site, reason))
        if r is None:
            r = self._rejections[(site, reason)] = Rejection(site, reason)
        r.count += 1
        r.last_source = src
        r.last_prefix = prefix
        r.last_time = now
        r.detail = detail
        self._emit(RegistrationRejected(site, reason, src, prefix, detail))

    def _site_flags(self, site_name: str | None) -> tuple[bool, bool | None]:
        s = self.sites.get(site_name) if site_name is not None else None
        return (s.force_merge, s.proxy_reply) if s is not None else (False, None)

    def _remove_registration(self, reg: Registration) -> None:
        fm, fp = self._site_flags(reg.site)
        self.registrations.remove(reg.prefix, reg.key, fm, fp)

    def _installed(self, reg: Registration) -> bool:
        entry = self.registrations.get(reg.prefix)
        return entry is not None and entry.registrant(reg.key) is reg

    def _intern(self, key: Any, value: Any) -> Any:
        """One shared object per distinct locator set, ETR address and registrant key:
        a million EIDs behind a few thousand ETRs keep a few thousand locator tuples."""
        v = self._interned.get(key)
        if v is None:
            if len(self._interned) >= INTERN_MAX:
                self._interned.clear()
            v = self._interned[key] = value
        return v

    def _rebuild_configured(self) -> None:
        self.configured = configured_prefixes(self.sites.values())
        self._conf_version += 1
        self._sites_overlap = any(
            other is not s
            for s in self.sites.values()
            for ap in s.eid_prefixes
            for _, lst in self.configured.covering(ap.prefix)
            for other, _ in lst
        ) or any(len(lst) > 1 for _, lst in self.configured.items())

    # ==================================================================== Map-Request
    def receive_fast(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> tuple[bytes, str, int] | None:
        """``receive``, except that the one answer to a common-shape Map-Request (plain or
        ECM) is returned as (payload, destination address text, port) for the shell to
        send at once instead of being queued; counters are the same.  None = handled the
        ``receive`` way (whatever it sends is queued)."""
        t = datagram[0] >> 4 if datagram else 0
        if t == 8:
            c = self.counters
            c.messages_in[_ECM_NAME] += 1
            if not self._ecm_allowed(datagram, src, now):
                return None
            return answer_now_or_slow(self, c, datagram, True, src, dst, now, self._ecm_slow, None)
        if t == 1 and self.config.accept_plain_requests:
            c = self.counters
            c.messages_in[_REQUEST_NAME] += 1
            if not self.limiter.allow(src.address, now):
                c.requests["rate-limited"] += 1
                return None
            return answer_now_or_slow(self, c, datagram, False, src, dst, now, self._plain_slow, None)
        if t == 3:
            return self._register_lane(datagram, src, now)
        self.receive(datagram, src, dst, now)
        return None

    def _register_lane(self, datagram: bytes, src: Endpoint, now: float) -> tuple[bytes, str, int] | None:
        """``receive`` of a Map-Register, its Map-Notify returned to be sent at once."""
        c = self.counters
        c.messages_in[_REGISTER_NAME] += 1
        try:
            notify = self._register(datagram, src, now)
        except DecodeError as e:
            c.decode_errors[e.reason] += 1
            return None
        if notify is None:
            return None
        c.messages_out["map-notify"] += 1
        hit = self._src_text.get(id(src))  # the shell keeps one Endpoint per peer
        if hit is not None and hit[0] is src:
            return notify, hit[1], src.port
        text = self._text_of(src.address)
        if len(self._src_text) >= 8192:
            self._src_text.clear()
        self._src_text[id(src)] = (src, text)  # holding src keeps its id from being reused
        return notify, text, src.port

    def _on_plain_request(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        if not self.config.accept_plain_requests:
            self.counters.dropped["plain-request"] += 1
            return
        if not self.limiter.allow(src.address, now):
            self.counters.requests["rate-limited"] += 1
            return
        peek = peek_map_request(data, False)
        if peek is not None and self._fast_request(peek, dst, now, src.port, None):
            return
        self._plain_slow(data, src, dst, now)

    def _plain_slow(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        req = parse_control(data)
        if not isinstance(req, MapRequest):  # pragma: no cover - the nibble says 1
            return
        self.handle_map_request(req, src, dst, now, reply_port=src.port, raw_ecm=None)

    def _ecm_allowed(self, data: bytes, src: Endpoint, now: float) -> bool:
        """The rate limiter's verdict on an ECM (counted when refused)."""
        if data[0] & _ECM_M_BYTE:
            # from a Map-Resolver: limit per requesting ITR (inner source), not per resolver
            inner = data[16:20] if len(data) > 4 and data[4] >> 4 == 4 else data[12:28]
            ok = self.limiter.allow(bytes(inner), now)
        else:
            ok = self.limiter.allow(src.address, now)
        if not ok:
            self.counters.requests["rate-limited"] += 1
        return ok

    def _on_ecm(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        if not self._ecm_allowed(data, src, now):
            return
        peek = peek_map_request(data, True)
        if peek is not None and self._fast_request(peek, dst, now, peek.reply_port, data):
            return
        self._ecm_slow(data, src, dst, now)

    def _ecm_slow(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        ecm = parse_control(data)
        if not isinstance(ecm, Ecm) or not isinstance(ecm.message, MapRequest):
            self.counters.dropped["ecm-not-map-request"] += 1
            return
        self.handle_map_request(ecm.message, src, dst, now, reply_port=ecm.inner_sport, raw_ecm=data, ecm=ecm)

    def answer_fast(self, data: bytes, ecm: bool, dst: Endpoint, now: float, src_port: int) -> bool:
        """Answer a common-shape Map-Request (in an ECM when ``ecm``) straight from its
        bytes, after the caller's rate limiting; False = use the full decoder.  The
        co-located Map-Resolver's entry point."""
        peek = peek_map_request(data, ecm)
        if peek is None:
            return False
        return self._fast_request(peek, dst, now, peek.reply_port if ecm else src_port, data if ecm else None)

    def _fast_request(
        self, p: PeekedRequest, dst: Endpoint, now: float, reply_port: int, raw_ecm: bytes | None
    ) -> bool:
        """Answer a request read by ``fastpath``; False = let the full decoder handle it."""
        out = self._fast_core(p, dst.address.version, reply_port, raw_ecm)
        if out is None:
            return False
        data, to, port, kind = out
        addr = to if not isinstance(to, bytes) else IPv4Address(to) if len(to) == 4 else IPv6Address(to)
        self._send(data, Endpoint(addr, port), kind)
        return True

    def fast_reply(
        self, p: PeekedRequest, want: int, reply_port: int, raw_ecm: bytes | None
    ) -> tuple[bytes, str, int] | None:
        """As ``_fast_request`` for a shell that sends at once: the one datagram to send as
        (payload, destination address text, port), counted in ``messages_out`` like a
        queued send; None = nothing was done, use the full decoder.  ``want`` is the IP
        version of the address the request arrived on."""
        out = self._fast_core(p, want, reply_port, raw_ecm)
        if out is None:
            return None
        data, to, port, kind = out
        self.counters.messages_out[kind] += 1
        return data, self._text_of(to), port

    def _text_of(self, to: bytes | IPAddr) -> str:
        """Address text of a packed address or an address object (cached)."""
        text = self._addr_text.get(to)
        if text is None:
            if len(self._addr_text) >= INTERN_MAX:
                self._addr_text.clear()
            if isinstance(to, bytes):
                text = socket.inet_ntop(socket.AF_INET if len(to) == 4 else socket.AF_INET6, to)
            else:
                text = str(to)
            self._addr_text[to] = text
        return text

    def _fast_core(
        self, p: PeekedRequest, want: int, reply_port: int, raw_ecm: bytes | None
    ) -> tuple[bytes, bytes | IPAddr, int, str] | None:
        """The answer to a request read by ``fastpath`` as (payload, destination (packed ITR-RLOC
        or ETR address), port, kind for ``messages_out``), with ``requests`` counted; None
        = nothing was done (let the full decoder handle it)."""
        itr_b: bytes | None = None
        for version, packed in p.itr_rlocs:
            if packed not in _ZERO_ADDRESSES:
                if version == want:
                    itr_b = packed
                    break
                if itr_b is None:
                    itr_b = packed
        if itr_b is None:
            return None
        entry = self.registrations.table.lookup_int(p.iid, p.afi, p.eid, p.mask_len)
        if entry is not None:
            if entry.proxy_reply or not entry.locators:
                self.counters.requests["proxy-reply"] += 1
                tmpl = entry.reply_cache
                if tmpl is None:
                    tmpl = entry.reply_cache = self._reply_template(entry)
                return tmpl[:4] + p.nonce.to_bytes(8, "big") + tmpl[12:], itr_b, reply_port, "map-reply"
            if raw_ecm is None:
                return None  # a plain request must be wrapped in a new ECM: slow path
            etr = self._pick_etr(entry, want)
            if etr is None:
                return None
            b0 = (raw_ecm[0] | _ECM_E_BYTE) & ~_ECM_M_BYTE & 0xFF
            self.counters.requests["forwarded-to-etr"] += 1
            return bytes((b0,)) + raw_ecm[1:], etr, CONTROL_PORT, "ecm"
        key = (self.registrations.version, self._conf_version)
        reply = self._negfast.reply(key, p, self._negative_for, self._neg, self.counters)
        return reply, itr_b, reply_port, "map-reply"

    def handle_map_request(
        self,
        req: MapRequest,
        src: Endpoint,
        dst: Endpoint,
        now: float,
        reply_port: int,
        raw_ecm: bytes | None = None,
        ecm: Ecm | None = None,
    ) -> None:
        """Answer, forward or negatively answer one decoded Map-Request.

        Also the local hand-over point of a co-located Map-Resolver.  ``raw_ecm`` is the
        received ECM (forwarded to the ETR with only its flag bits changed);
        ``reply_port`` is where the Map-Reply goes (inner UDP source port for an ECM).
        """
        if req.probe or req.smr or req.dont_map_reply:
            self.counters.dropped["probe-or-smr"] += 1
            return
        if not req.records:
            self.counters.dropped["no-records"] += 1
            return
        rec = req.records[0]
        try:
            eid = rec.prefix
        except ValueError:
            self.counters.dropped["unusable-eid"] += 1
            return
        if isinstance(eid.address, NoAddress):
            self.counters.dropped["unusable-eid"] += 1
            return
        itr = choose_itr_rloc(req.itr_rlocs, dst.address.version)
        if itr is None:
            self.counters.dropped["no-itr-rloc"] += 1
            return
        reply_to = Endpoint(itr, reply_port)

        entry = self.registrations.lookup(eid)
        if entry is not None:
            if entry.proxy_reply or not entry.locators:
                self._send(self._proxy_reply(entry, req.nonce), reply_to, "map-reply")
                self.counters.requests["proxy-reply"] += 1
                return
            etr = self._pick_etr(entry, dst.address.version)
            if etr is not None:
                self._send(self._forward_bytes(req, src, dst, reply_port, raw_ecm, ecm), Endpoint(etr, CONTROL_PORT), "ecm")
                self.counters.requests["forwarded-to-etr"] += 1
                return
            # no unicast IP locator to forward to: answer for the ETR
            self._send(self._proxy_reply(entry, req.nonce), reply_to, "map-reply")
            self.counters.requests["proxy-reply"] += 1
            return

        if not address_width(eid.address):
            data = self._neg.echo_reply(req.nonce, rec.eid, rec.mask_len, self.config.negative_ttl, self.config.negative_action)
            self._send(data, reply_to, "map-reply")
            self.counters.requests["negative-non-prefix"] += 1
            return
        self._negative(eid, req.nonce, reply_to)

    def _negative(self, eid: EidPrefix, nonce: int, reply_to: Endpoint) -> None:
        """Negative Map-Reply: 1 minute inside a configured prefix, else 15 (spec 11.3, 11.4)."""
        neg, ttl, action, unregistered = self._negative_for(eid)
        self.counters.requests["negative-unregistered" if unregistered else "negative-non-eid"] += 1
        self._send(self._neg.reply(nonce, neg, ttl, action), reply_to, "map-reply")

    def _negative_for(self, eid: EidPrefix) -> tuple[EidPrefix, int, Action, bool]:
        """(negative prefix, TTL, action, inside a configured prefix) for an unregistered EID."""
        tables = (self.configured, self.registrations.table)
        hit = self.configured.longest_match(eid)
        if hit is not None:
            conf_prefix, lst = hit
            site = lst[0][0]
            neg = negative_prefix(eid, tables, lower_bound=conf_prefix.mask_len)
            return neg, self.config.unregistered_ttl, site.unregistered_action, True
        neg = negative_prefix(eid, tables)
        return neg, self.config.negative_ttl, self.config.negative_action, False

    def _proxy_reply(self, entry: RegisteredPrefix, nonce: int) -> bytes:
        tmpl = entry.reply_cache
        if tmpl is None:
            tmpl = entry.reply_cache = self._reply_template(entry)
        return tmpl[:4] + nonce.to_bytes(8, "big") + tmpl[12:]

    def _reply_template(self, entry: RegisteredPrefix) -> bytes:
        """The proxy Map-Reply for ``entry`` with nonce 0 (not cached)."""
        ttl = self.config.proxy_reply_ttl if self.config.proxy_reply_ttl is not None else entry.ttl
        rec = EidRecord.for_prefix(
            entry.prefix,
            entry.locators,
            ttl=ttl,
            action=entry.action if not entry.locators else Action.NO_ACTION,
            authoritative=False,
            map_version=entry.map_version,
        )
        return MapReply(0, (rec,)).to_bytes()

    def replica_value(self, entry: RegisteredPrefix) -> bytes | tuple[IPAddr, ...]:
        """How a Map-Request replica (``core/replica.py``) answers for ``entry``: the proxy
        Map-Reply template (nonce 0), or the best-priority ETR addresses to forward to."""
        if not (entry.proxy_reply or not entry.locators):
            locs = entry.etr_rlocs()
            if locs:
                best = locs[0].priority
                return tuple(loc.address for loc in locs if loc.priority == best)  # type: ignore[misc]
        tmpl = entry.reply_cache
        return tmpl if tmpl is not None else self._reply_template(entry)

    def _pick_etr(self, entry: RegisteredPrefix, prefer_version: int) -> IPAddr | None:
        locs = entry.etr_rlocs()
        if not locs:
            return None
        best = locs[0].priority
        same = [loc.address for loc in locs if loc.priority == best and loc.address.version == prefer_version]  # type: ignore[union-attr]
        pool = same or [loc.address for loc in locs if loc.priority == best]
        choice = pool[0] if len(pool) == 1 else self.rng.choice(pool)
        assert isinstance(choice, IPv4Address | IPv6Address)
        return choice

    def _forward_bytes(
        self, req: MapRequest, src: Endpoint, dst: Endpoint, reply_port: int, raw_ecm: bytes | None, ecm: Ecm | None
    ) -> bytes:
        """The ECM (E bit) that carries the request to an ETR, same inner headers."""
        if raw_ecm is not None:
            b0 = (raw_ecm[0] | _ECM_E_BYTE) & ~_ECM_M_BYTE & 0xFF
            return bytes((b0,)) + raw_ecm[1:]
        eid_addr = req.records[0].prefix.address
        inner_dst = eid_addr if isinstance(eid_addr, IPv4Address | IPv6Address) else dst.address
        if inner_dst.version != src.address.version:
            inner_dst = dst.address if dst.address.version == src.address.version else src.address
        return Ecm(req, src.address, inner_dst, reply_port, to_etr=True).to_bytes()


__all__ = [
    "Counters",
    "MapServer",
    "MapServerConfig",
    "NEGATIVE_TTL_MIN",
    "NegativeReplyCache",
    "Rejection",
    "RegistrationExpired",
    "RegistrationRejected",
    "RegistrationWithdrawn",
    "SiteChanged",
    "SiteRegistered",
    "UNREGISTERED_TTL_MIN",
    "choose_itr_rloc",
    "msg_name",
]
