"""A Map-Request answering replica of the Map-Server's table (sans-I/O).

Why
---
One CPython process answers some 40 k Map-Requests per second; issue 3 asks for
100 k on two cores.  With ``[node] workers = N`` the daemon forks N worker processes
that bind the control port with SO_REUSEPORT (``shell/workers.py``); the kernel spreads
the datagrams over them and the main process.  Each worker holds this replica: only
what answering the *common-shape* request needs (``core/fastpath.py``), per registered
IPv4/IPv6 prefix either the proxy Map-Reply template (nonce 0) or the best-priority ETR
addresses to forward the ECM to (``MapServer.replica_value``), plus the configured
prefixes for negative replies.  The main process keeps the authoritative table and
pushes every change (``RegistrationTable.journal``) and every site/config change.

Anything the replica does not answer from the bytes - another message type, a request
of another shape, a plain request that would have to be wrapped in a new ECM - is
*not* handled here: ``receive`` returns False and the worker forwards the datagram to
the main process, whose full engine decides.  So the replica's answers are exactly the
Map-Server fast path's (``MapServer._fast_request``), which a property test checks
(``tests/core/test_map_server_replica.py``).

Per-source rate limiting is per process: with N workers a source may get up to
(N + 1) times ``map-request-rate-limit`` when the kernel spreads its flows.
"""

from __future__ import annotations

import random
import socket
import weakref
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..db.lpm import LpmTable
from ..db.negative import negative_prefix
from ..db.sites import AllowedPrefix, SitePolicy, configured_prefixes
from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from .engine import CONTROL_PORT, Endpoint
from .fastpath import PeekedRequest, peek_map_request
from .map_server import MapServer
from .mapsys import Counters, MapServerConfig, NegativeFastCache, NegativeReplyCache
from .ratelimit import TokenBucketLimiter

_ECM_E_BYTE = 0x02
_ECM_M_BYTE = 0x01

IPAddr = IPv4Address | IPv6Address
ReplicaValue = bytes | tuple[IPAddr, ...]
"""Proxy Map-Reply template (nonce 0), or the ETR addresses a request is forwarded to."""
Update = tuple[int, int, int, int, "ReplicaValue | None"]
"""(iid, afi, address as int, mask-len, value or None to remove)."""

ReplicaSend = tuple[bytes, str, int]
"""(datagram, destination address text, destination port)."""


def journal_updates(ms: MapServer, prefixes: Iterable[EidPrefix]) -> list[Update]:
    """The replica updates for ``prefixes`` (drained from ``ms.registrations.journal``)."""
    out: list[Update] = []
    table = ms.registrations
    for p in prefixes:
        afi = p.afi
        if afi not in (1, 2):
            continue  # the fast path answers IPv4/IPv6 EIDs only; the rest goes to main
        entry = table.get(p)
        value = None if entry is None else ms.replica_value(entry)
        out.append((p.iid, afi, int(p.address), p.mask_len, value))  # type: ignore[arg-type]
    return out


class JournalHub:
    """Fans the Map-Server's change journal out to every consumer (worker replicas, the
    kernel Map-Request offload): whoever calls :meth:`drain` first empties
    ``ms.registrations.journal`` and hands the prefixes to every subscriber."""

    def __init__(self, ms: MapServer) -> None:
        self.ms = ms
        if ms.registrations.journal is None:
            ms.registrations.journal = set()
        self.subscribers: list[Callable[[list[EidPrefix]], None]] = []

    def subscribe(self, fn: Callable[[list[EidPrefix]], None]) -> None:
        self.subscribers.append(fn)

    def unsubscribe(self, fn: Callable[[list[EidPrefix]], None]) -> None:
        self.subscribers = [f for f in self.subscribers if f != fn]

    def drain(self) -> None:
        journal = self.ms.registrations.journal
        if not journal:
            return
        prefixes = list(journal)
        journal.clear()
        for fn in self.subscribers:
            fn(prefixes)


_HUBS: weakref.WeakKeyDictionary[MapServer, JournalHub] = weakref.WeakKeyDictionary()


def journal_hub(ms: MapServer) -> JournalHub:
    """The one :class:`JournalHub` of ``ms`` (journaling starts with it)."""
    hub = _HUBS.get(ms)
    if hub is None:
        hub = _HUBS[ms] = JournalHub(ms)
    return hub


class RequestReplica:
    """Answers common-shape Map-Requests like ``MapServer._fast_request`` from a replica."""

    def __init__(
        self, sites: Iterable[SitePolicy], config: MapServerConfig, rng: random.Random | None = None
    ) -> None:
        self.rng = rng or random.Random()
        self.table: LpmTable[ReplicaValue] = LpmTable()
        """Registered IPv4/IPv6 prefixes -> what to answer."""
        self.version = 0
        """Bumped when the set of registered prefixes changes."""
        self.configured: LpmTable[list[tuple[SitePolicy, AllowedPrefix]]] = LpmTable()
        self._conf_version = 0
        self.counters = Counters()
        self.sends: list[ReplicaSend] = []
        self._neg = NegativeReplyCache()
        self._negfast = NegativeFastCache()
        self._addr_text: dict[bytes, str] = {}
        self.config = config
        self.limiter = _limiter(config)
        self.set_sites(sites, config)

    @classmethod
    def from_map_server(cls, ms: MapServer, rng: random.Random | None = None) -> RequestReplica:
        """A replica of ``ms`` as it is now."""
        r = cls(ms.sites.values(), ms.config, rng)
        r.apply(journal_updates(ms, (p for p, _ in ms.registrations.table.items())))
        return r

    # --- updates from the main process ---------------------------------------------
    def set_sites(self, sites: Iterable[SitePolicy], config: MapServerConfig) -> None:
        self.configured = configured_prefixes(sites)
        self._conf_version += 1
        if config != self.config:
            old = self.config
            self.config = config
            if (old.map_request_rate, old.map_request_burst) != (config.map_request_rate, config.map_request_burst):
                self.limiter = _limiter(config)
        self._neg = NegativeReplyCache()

    def apply(self, updates: Iterable[Update]) -> None:
        table = self.table
        for iid, afi, value, mask_len, v in updates:
            addr: IPAddr = IPv4Address(value) if afi == 1 else IPv6Address(value)
            p = EidPrefix(iid, addr, mask_len)
            if v is None:
                if table.delete(p) is not None:
                    self.version += 1
            elif table.insert(p, v) is None:
                self.version += 1

    def __len__(self) -> int:
        return len(self.table)

    # --- requests -----------------------------------------------------------------------
    def receive(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> bool:
        """Answer a Map-Request (plain or in an ECM to the MR / MS) if it has the common
        shape; True = handled (answered, forwarded to an ETR or rate-limited), False =
        hand the datagram to the main process."""
        if not data:
            return False
        t = data[0] >> 4
        if t == 8:
            if data[0] & 0x06:  # D or E: not ours
                return False
            if data[0] & _ECM_M_BYTE:
                inner = data[16:20] if len(data) > 4 and data[4] >> 4 == 4 else data[12:28]
                key: Any = bytes(inner)
            else:
                key = src.address
            p = peek_map_request(data, True)
            if p is None:
                return False
            if not self.limiter.allow(key, now):
                self.counters.requests["rate-limited"] += 1
                return True
            return self._answer(p, dst, p.reply_port, data)
        if t == 1:
            if not self.config.accept_plain_requests:
                return False
            p = peek_map_request(data, False)
            if p is None:
                return False
            if not self.limiter.allow(src.address, now):
                self.counters.requests["rate-limited"] += 1
                return True
            return self._answer(p, dst, src.port, None)
        return False

    def _text(self, packed: bytes) -> str:
        s = self._addr_text.get(packed)
        if s is None:
            if len(self._addr_text) >= 65536:
                self._addr_text.clear()
            fam = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            s = self._addr_text[packed] = socket.inet_ntop(fam, packed)
        return s

    def _answer(self, p: PeekedRequest, dst: Endpoint, reply_port: int, raw_ecm: bytes | None) -> bool:
        want = dst.address.version
        itr_b: bytes | None = None
        for version, packed in p.itr_rlocs:
            if any(packed):
                if version == want:
                    itr_b = packed
                    break
                if itr_b is None:
                    itr_b = packed
        if itr_b is None:
            return False
        v = self.table.lookup_int(p.iid, p.afi, p.eid, p.mask_len)
        if v is not None:
            if isinstance(v, bytes):
                self.sends.append((v[:4] + p.nonce.to_bytes(8, "big") + v[12:], self._text(itr_b), reply_port))
                self.counters.requests["proxy-reply"] += 1
                return True
            if raw_ecm is None:
                return False
            same = [a for a in v if a.version == want]
            pool = same or list(v)
            etr = pool[0] if len(pool) == 1 else self.rng.choice(pool)
            b0 = (raw_ecm[0] | _ECM_E_BYTE) & ~_ECM_M_BYTE & 0xFF
            self.sends.append((bytes((b0,)) + raw_ecm[1:], str(etr), CONTROL_PORT))
            self.counters.requests["forwarded-to-etr"] += 1
            return True
        reply = self._negfast.reply((self.version, self._conf_version), p, self._negative_for, self._neg, self.counters)
        self.sends.append((reply, self._text(itr_b), reply_port))
        return True

    def _negative_for(self, eid: EidPrefix) -> tuple[EidPrefix, int, Action, bool]:
        """As ``MapServer._negative_for``, over the replica's tables."""
        tables = (self.configured, self.table)
        hit = self.configured.longest_match(eid)
        if hit is not None:
            conf_prefix, lst = hit
            site = lst[0][0]
            neg = negative_prefix(eid, tables, lower_bound=conf_prefix.mask_len)
            return neg, self.config.unregistered_ttl, site.unregistered_action, True
        neg = negative_prefix(eid, tables)
        return neg, self.config.negative_ttl, self.config.negative_action, False


def _limiter(c: MapServerConfig) -> TokenBucketLimiter:
    burst = c.map_request_burst if c.map_request_burst is not None else max(1.0, c.map_request_rate)
    return TokenBucketLimiter(c.map_request_rate, burst, c.rate_limit_sources)


__all__ = ["JournalHub", "ReplicaSend", "ReplicaValue", "RequestReplica", "Update", "journal_hub", "journal_updates"]
