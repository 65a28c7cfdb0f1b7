"""The Map-Resolver as a sans-I/O engine (RFC 9301 section 8.3; spec 11.2).

An ITR sends its Map-Requests to a Map-Resolver inside an ECM (type 8, inner UDP source
port = where the Map-Reply must go).  The Map-Resolver's job is to get each one to the
authority for the EID, or to answer that nobody is:

* with a **co-located Map-Server** (``map_server=``), the request is handed over locally
  (``MapServer.handle_map_request``): the MS proxy-replies, forwards to an ETR, or sends
  the negative reply (TTL 1 minute for configured-but-unregistered, 15 minutes for
  non-EID space).  The MR then also passes every other datagram it gets (Map-Register,
  Map-Notify-Ack, ECMs with the M bit) to the MS, and its ``poll_sends`` /
  ``poll_events`` / ``next_deadline`` / ``on_timer`` cover both engines, so a shell may
  drive the pair as one engine;
* otherwise the ECM is **forwarded** to a configured Map-Server with the M bit set (the
  received bytes with one flag bit changed, so the inner headers and the inner source
  port survive): the MS whose configured EID-prefixes hold the EID (longest match), else
  the first MS configured without prefixes, else - when every MS lists prefixes and none
  covers the EID - nobody: the EID is non-EID space as far as we know, and the MR itself
  answers a negative Map-Reply (TTL 15 minutes, configurable action, default
  Natively-Forward) for the shortest non-EID covering prefix (spec 11.4) over the MSs'
  prefixes.

Plain (not encapsulated) Map-Requests are accepted too unless configured otherwise
(OOR's MS drops them; answering costs nothing).  Requests are rate-limited per source
with a token bucket.  ``receive`` never raises on peer input: decode errors are counted
by reason and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..db.lpm import LpmTable, address_width
from ..db.negative import negative_prefix
from ..wire.address import NoAddress
from ..wire.control import Ecm, MapRequest, parse_control
from ..wire.enums import Action, MessageType
from ..wire.errors import DecodeError
from ..wire.prefix import EidPrefix
from .engine import Endpoint, Event, Send
from .fastpath import answer_now_or_slow
from .map_server import NEGATIVE_TTL_MIN, Counters, MapServer, NegativeReplyCache, choose_itr_rloc, msg_name
from .ratelimit import TokenBucketLimiter

_ECM_M_BYTE = 0x01
_ECM_DEM_BYTE = 0x07  # D, E, M bits of byte 0
_ECM_NAME = msg_name(MessageType.ECM)
_REQUEST_NAME = msg_name(MessageType.MAP_REQUEST)


@dataclass(frozen=True, slots=True)
class MapServerPeer:
    """A Map-Server the resolver forwards to."""

    endpoint: Endpoint
    """Its address and control port."""
    prefixes: tuple[EidPrefix, ...] = ()
    """EID-prefixes it is authoritative for; empty = a catch-all."""


@dataclass(frozen=True, slots=True)
class MapResolverConfig:
    """Map-Resolver knobs (``config.model.MapResolverOptions`` maps onto these)."""

    negative_ttl: int = NEGATIVE_TTL_MIN
    """TTL (minutes) of negative replies for non-EID space."""
    negative_action: Action = Action.NATIVELY_FORWARD
    """ACT of negative replies."""
    map_request_rate: float = 1000.0
    """Map-Requests per second per source (0 = unlimited)."""
    map_request_burst: float | None = None
    """Bucket size (None = one second's worth)."""
    rate_limit_sources: int = 65536
    """Sources tracked by the rate limiter."""
    accept_plain_requests: bool = True
    """Answer Map-Requests that are not encapsulated."""
    max_pending_sends: int = 100_000
    """Bound on queued datagrams."""
    map_servers: tuple[MapServerPeer, ...] = field(default=())
    """Where to forward when there is no co-located Map-Server."""


class MapResolver:
    """The Map-Resolver engine (``core.engine.Engine``)."""

    def __init__(self, config: MapResolverConfig | None = None, map_server: MapServer | None = None) -> None:
        self.config = config or MapResolverConfig()
        self.map_server = map_server
        """Co-located Map-Server, if any (requests are handed over locally)."""
        self.counters = Counters()
        self._sends: list[Send] = []
        self._neg = NegativeReplyCache()
        c = self.config
        burst = c.map_request_burst if c.map_request_burst is not None else max(1.0, c.map_request_rate)
        self.limiter = TokenBucketLimiter(c.map_request_rate, burst, c.rate_limit_sources)
        self.peers_by_prefix: LpmTable[MapServerPeer] = LpmTable()
        self.catch_all: MapServerPeer | None = None
        self.set_map_servers(c.map_servers)

    def set_map_servers(self, peers: Sequence[MapServerPeer]) -> None:
        """Replace the forwarding table (config reload)."""
        t: LpmTable[MapServerPeer] = LpmTable()
        self.catch_all = None
        for p in peers:
            if not p.prefixes and self.catch_all is None:
                self.catch_all = p
            for pre in p.prefixes:
                if t.exact(pre) is None:
                    t.insert(pre, p)
        self.peers_by_prefix = t
        self._peers = tuple(peers)

    # =========================================================================== Engine
    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        """Handle one control datagram; never raises on peer input."""
        if not datagram:
            self.counters.decode_errors["empty"] += 1
            return
        b0 = datagram[0]
        t = b0 >> 4
        ms = self.map_server
        # Everything that is not an ITR's request goes to the co-located Map-Server.
        if ms is not None and not (t == MessageType.MAP_REQUEST or (t == MessageType.ECM and not b0 & _ECM_DEM_BYTE)):
            ms.receive(datagram, src, dst, now)
            return
        try:
            self.counters.messages_in[msg_name(t)] += 1
            if t == MessageType.ECM:
                self._on_ecm(datagram, src, dst, now)
            elif t == MessageType.MAP_REQUEST:
                self._on_plain(datagram, src, dst, now)
            else:
                self.counters.dropped["unexpected-type"] += 1
        except DecodeError as e:
            self.counters.decode_errors[e.reason] += 1

    def poll_sends(self, now: float) -> list[Send]:
        out, self._sends = self._sends, []
        if self.map_server is not None:
            out.extend(self.map_server.poll_sends(now))
        return out

    def poll_events(self) -> list[Event]:
        return self.map_server.poll_events() if self.map_server is not None else []

    def next_deadline(self) -> float | None:
        return self.map_server.next_deadline() if self.map_server is not None else None

    def on_timer(self, now: float) -> None:
        if self.map_server is not None:
            self.map_server.on_timer(now)

    # ========================================================================= handling
    def _send(self, data: bytes, dst: Endpoint, kind: str) -> None:
        if len(self._sends) >= self.config.max_pending_sends:
            self.counters.dropped["send-queue-full"] += 1
            return
        self._sends.append(Send(data, dst))
        self.counters.messages_out[kind] += 1

    def receive_fast(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> tuple[bytes, str, int] | None:
        """``receive``, except that the co-located Map-Server's one answer to a common-shape
        Map-Request (``MapServer.fast_reply``) is returned as (payload, destination address
        text, port) for the shell to send at once instead of being queued; counters are
        the same.  None = handled the ``receive`` way (whatever it sends is queued)."""
        ms = self.map_server
        b0 = datagram[0] if datagram else 0
        t = b0 >> 4
        if ms is not None and (t == MessageType.ECM and not b0 & _ECM_DEM_BYTE):
            c = self.counters
            c.messages_in[_ECM_NAME] += 1
            if not self.limiter.allow(src.address, now):
                c.requests["rate-limited"] += 1
                return None
            return answer_now_or_slow(ms, c, datagram, True, src, dst, now, self._ecm_slow, "handed-to-map-server")
        if ms is not None and t == MessageType.MAP_REQUEST and self.config.accept_plain_requests:
            c = self.counters
            c.messages_in[_REQUEST_NAME] += 1
            if not self.limiter.allow(src.address, now):
                c.requests["rate-limited"] += 1
                return None
            return answer_now_or_slow(ms, c, datagram, False, src, dst, now, self._plain_slow, "handed-to-map-server")
        if ms is not None and t == MessageType.MAP_REGISTER:
            return ms.receive_fast(datagram, src, dst, now)  # its Map-Notify goes out at once too
        self.receive(datagram, src, dst, now)
        return None

    def _on_plain(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        if not self.config.accept_plain_requests:
            self.counters.dropped["plain-request"] += 1
            return
        if not self.limiter.allow(src.address, now):
            self.counters.requests["rate-limited"] += 1
            return
        ms = self.map_server
        if ms is not None and ms.answer_fast(data, False, dst, now, src.port):
            self.counters.requests["handed-to-map-server"] += 1
            return
        self._plain_slow(data, src, dst, now)

    def _plain_slow(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        req = parse_control(data)
        if not isinstance(req, MapRequest):  # pragma: no cover - the nibble says 1
            return
        self._resolve(req, src, dst, now, src.port, None, None)

    def _on_ecm(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        if not self.limiter.allow(src.address, now):
            self.counters.requests["rate-limited"] += 1
            return
        ms = self.map_server
        if ms is not None and ms.answer_fast(data, True, dst, now, 0):
            # the co-located Map-Server answered from the raw bytes (core/fastpath.py)
            self.counters.requests["handed-to-map-server"] += 1
            return
        self._ecm_slow(data, src, dst, now)

    def _ecm_slow(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        ecm = parse_control(data)
        if not isinstance(ecm, Ecm) or not isinstance(ecm.message, MapRequest):
            self.counters.dropped["ecm-not-map-request"] += 1
            return
        self._resolve(ecm.message, src, dst, now, ecm.inner_sport, data, ecm)

    def _resolve(
        self,
        req: MapRequest,
        src: Endpoint,
        dst: Endpoint,
        now: float,
        reply_port: int,
        raw_ecm: bytes | None,
        ecm: Ecm | None,
    ) -> None:
        if self.map_server is not None:
            self.counters.requests["handed-to-map-server"] += 1
            self.map_server.handle_map_request(req, src, dst, now, reply_port, raw_ecm, ecm)
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
        peer = self.peers_by_prefix.lookup(eid) or self.catch_all
        if peer is not None:
            self._send(self._to_ms_bytes(req, src, dst, reply_port, raw_ecm), peer.endpoint, "ecm")
            self.counters.requests["forwarded-to-map-server"] += 1
            return
        # No Map-Server claims this EID: non-EID space as far as we know.
        itr = choose_itr_rloc(req.itr_rlocs, dst.address.version)
        if itr is None:
            self.counters.dropped["no-itr-rloc"] += 1
            return
        c = self.config
        if address_width(eid.address):
            neg = negative_prefix(eid, (self.peers_by_prefix,))
            data = self._neg.reply(req.nonce, neg, c.negative_ttl, c.negative_action)
        else:
            data = self._neg.echo_reply(req.nonce, rec.eid, rec.mask_len, c.negative_ttl, c.negative_action)
        self._send(data, Endpoint(itr, reply_port), "map-reply")
        self.counters.requests["negative-non-eid"] += 1

    @staticmethod
    def _to_ms_bytes(req: MapRequest, src: Endpoint, dst: Endpoint, reply_port: int, raw_ecm: bytes | None) -> bytes:
        if raw_ecm is not None:
            return bytes((raw_ecm[0] | _ECM_M_BYTE,)) + raw_ecm[1:]
        eid_addr = req.records[0].prefix.address
        inner_dst = eid_addr if getattr(eid_addr, "version", None) == src.address.version else dst.address
        if inner_dst.version != src.address.version:  # type: ignore[union-attr]
            inner_dst = src.address
        return Ecm(req, src.address, inner_dst, reply_port, to_ms=True).to_bytes()  # type: ignore[arg-type]

    # =============================================================== service methods
    def stats(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.counters.as_dict())
        d["map-servers"] = [
            {"address": str(p.endpoint), "prefixes": [str(x) for x in p.prefixes]} for p in self._peers
        ]
        d["rate-limited-sources"] = len(self.limiter)
        return d


__all__ = ["MapResolver", "MapResolverConfig", "MapServerPeer"]
