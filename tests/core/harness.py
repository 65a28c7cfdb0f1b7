"""In-memory harness for the mapping-system engines: feed bytes, fake ``now``, seeded rng.

``Net`` wires engines to endpoints and delivers their sends to each other (or records
them when nobody listens at the destination), so a test plays ITR / ETR by hand and
asserts on the datagrams that come out.  No sockets, no sleeps: time only moves when a
test says so (``net.advance_to(net.next_deadline())``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from lispnet.core.engine import Endpoint, Engine, Event, Send
from lispnet.db.sites import AllowedPrefix, SiteKey, SitePolicy
from lispnet.wire.address import Address
from lispnet.wire.control import Ecm, MapRegister, MapReply, MapRequest, RequestRecord, parse_control
from lispnet.wire.enums import AuthAlg
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

IPAddr = IPv4Address | IPv6Address

MS_ADDR = IPv4Address("10.0.0.1")
MS = Endpoint(MS_ADDR, 4342)


def ep(addr: str, port: int = 4342) -> Endpoint:
    return Endpoint(ip_address(addr), port)


def site(
    name: str,
    prefixes: Sequence[str | tuple[str, bool]],
    key: bytes = b"secret",
    key_id: int = 0,
    alg: AuthAlg = AuthAlg.HMAC_SHA_256_128,
    iid: int = 0,
    **kw: object,
) -> SitePolicy:
    """A site; ``prefixes`` are strings (exact only) or (prefix, accept_more_specifics)."""
    aps = []
    for p in prefixes:
        text, more = (p, False) if isinstance(p, str) else p
        aps.append(AllowedPrefix(EidPrefix.parse(text, iid), more))
    return SitePolicy(name=name, keys={key_id: SiteKey(alg, key)}, eid_prefixes=tuple(aps), **kw)  # type: ignore[arg-type]


def loc(addr: str, priority: int = 1, weight: int = 100) -> LocatorRecord:
    return LocatorRecord(ip_address(addr), priority, weight)


def record(prefix: str, *rlocs: str, iid: int = 0, ttl: int = 1440) -> EidRecord:
    return EidRecord.for_prefix(EidPrefix.parse(prefix, iid), tuple(loc(r) for r in rlocs), ttl=ttl, authoritative=True)


def register(
    records: list[EidRecord],
    key: bytes = b"secret",
    key_id: int = 0,
    alg: AuthAlg = AuthAlg.HMAC_SHA_256_128,
    nonce: int = 0x1122334455667788,
    auth_len: int | None = None,
    **flags: object,
) -> bytes:
    """A signed Map-Register (want-map-notify unless told otherwise)."""
    flags.setdefault("want_map_notify", True)
    msg = MapRegister(nonce, tuple(records), key_id, alg, b"", **flags)  # type: ignore[arg-type]
    return msg.signed(key, auth_len).to_bytes()


def map_request(
    eid: Address | str,
    mask_len: int | None = None,
    iid: int = 0,
    itr_rlocs: tuple[str, ...] = ("192.0.2.10",),
    nonce: int = 0xABCDEF0123456789,
    **kw: object,
) -> MapRequest:
    addr = ip_address(eid) if isinstance(eid, str) else eid
    if isinstance(addr, IPv4Address | IPv6Address):
        prefix = EidPrefix(iid, addr, mask_len if mask_len is not None else addr.max_prefixlen)
        rec = RequestRecord.for_prefix(prefix)
    else:
        rec = RequestRecord(addr, mask_len or 0)
    return MapRequest(
        nonce, itr_rlocs=tuple(ip_address(a) for a in itr_rlocs), records=(rec,), **kw  # type: ignore[arg-type]
    )


def ecm(req: MapRequest, inner_src: str = "192.0.2.10", sport: int = 61000, **kw: object) -> bytes:
    src = ip_address(inner_src)
    first = req.records[0].prefix.address
    dst = first if isinstance(first, IPv4Address | IPv6Address) and first.version == src.version else src
    return Ecm(req, src, dst, sport, **kw).to_bytes()  # type: ignore[arg-type]


def reply_of(data: bytes) -> MapReply:
    """Decode ``data`` and insist it is a Map-Reply."""
    msg = parse_control(data)
    assert isinstance(msg, MapReply), msg
    return msg


@dataclass
class Net:
    """Engines at endpoints; datagrams between them are delivered in order."""

    now: float = 1000.0
    engines: dict[IPAddr, Engine] = field(default_factory=dict)
    addresses: dict[int, Endpoint] = field(default_factory=dict)
    outside: list[Send] = field(default_factory=list)
    """Datagrams to endpoints no engine owns (ITRs, ETRs played by the test)."""
    events: list[Event] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def add(self, address: Endpoint, engine: Engine) -> Engine:
        self.engines[address.address] = engine
        self.addresses[id(engine)] = address
        return engine

    def send(self, data: bytes, src: Endpoint, dst: Endpoint) -> list[Send]:
        """Deliver ``data`` and everything it causes; return what left the engines' world."""
        before = len(self.outside)
        pending: list[tuple[bytes, Endpoint, Endpoint]] = [(data, src, dst)]
        hops = 0
        while pending:
            hops += 1
            assert hops < 100, "message loop"
            d, s, t = pending.pop(0)
            eng = self.engines.get(t.address)
            if eng is None:
                self.outside.append(Send(d, t, s))
                continue
            eng.receive(d, s, t, self.now)
            me = self.addresses[id(eng)]
            for out in eng.poll_sends(self.now):
                pending.append((out.data, me, out.dst))
            self.events.extend(eng.poll_events())
        return self.outside[before:]

    def next_deadline(self) -> float | None:
        ds = [d for e in self.engines.values() if (d := e.next_deadline()) is not None]
        return min(ds) if ds else None

    def advance_to(self, t: float) -> list[Send]:
        """Move time to ``t`` firing every timer due on the way."""
        before = len(self.outside)
        while True:
            d = self.next_deadline()
            if d is None or d > t:
                break
            self.now = max(self.now, d)
            for eng in list(self.engines.values()):
                dl = eng.next_deadline()
                if dl is not None and dl <= self.now:
                    eng.on_timer(self.now)
                    me = self.addresses[id(eng)]
                    for out in eng.poll_sends(self.now):
                        self.send(out.data, me, out.dst)
                    self.events.extend(eng.poll_events())
        self.now = t
        return self.outside[before:]

    def take_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out
