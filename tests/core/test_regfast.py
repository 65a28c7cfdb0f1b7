"""The Map-Register fast path (``core/regfast.py``, ``core/registrar.py``).

* ``parse_register`` agrees with the general decoder on every field it returns, and
  returns nothing for what the decoder refuses (random registers, and bit flips of them);
* a Map-Server with the fast path and one without (``register_fast_path=False``: the
  general decoder for every Map-Register) end in the same state after the same random
  sequence of registrations, refreshes, changes, withdrawals, wrong keys and forgeries:
  same sends (byte for byte: the Map-Notify nonce is the register's), events, counters,
  rejections, registrations and expiries;
* a forged or bit-flipped refresh is rejected without moving the registration;
* the storage is compact: no dict for a one-registrant prefix, shared locator tuples and
  signatures, and a bound on the bytes allocated per registered EID.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from harness import ep, register, site
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lispnet.core.engine import Endpoint
from lispnet.core.map_server import MapServer, MapServerConfig
from lispnet.core.regfast import hmac_digest, parse_register, quick_register
from lispnet.db.sites import SitePolicy
from lispnet.wire.address import LcafUnknown
from lispnet.wire.buffer import Reader
from lispnet.wire.control import MapRegister, parse_control
from lispnet.wire.enums import Action, AuthAlg
from lispnet.wire.errors import DecodeError
from lispnet.wire.lcaf import LcafInstanceId
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

MS_ADDR = ep("192.0.2.1")


def sites(overlap: bool = False) -> list[SitePolicy]:
    out = [
        site("a", [("10.0.0.0/12", True)], proxy_reply=True),
        site("b", ["10.200.0.0/16", ("10.201.0.0/16", True)], key=b"bkey", force_merge=True),
        site("v6", [("2001:db8::/32", True), ("10.0.0.0/8", True)], key=b"v6key", iid=7),
        site("r", [("172.16.0.0/12", True)], key=b"secret", key_id=3, alg=AuthAlg.HMAC_SHA_1_96,
             allowed_rlocs=(ip_network("192.0.2.0/24"),)),
    ]
    if overlap:
        out.append(site("o", [("10.201.0.0/16", True)], key=b"bkey"))
    return out


# --- random Map-Registers ---------------------------------------------------------------

ipv4_locator = st.builds(
    lambda a, p, w, r: LocatorRecord(IPv4Address(a), p, w, reachable=r),
    st.sampled_from([0xC0000201, 0xC0000202, 0xCB007101, 0x0A000001]),
    st.sampled_from([1, 2, 255]),
    st.sampled_from([0, 50, 100]),
    st.booleans(),
)
ipv6_locator = st.builds(lambda a: LocatorRecord(IPv6Address(a)), st.sampled_from([0x20010DB8 << 96 | 1, 1]))
lcaf_locator = st.builds(lambda b: LocatorRecord(LcafUnknown(200, b)), st.binary(max_size=6))
locator = st.one_of(ipv4_locator, ipv4_locator, ipv6_locator, lcaf_locator)


@st.composite
def eid_record(draw: st.DrawFn, kind: str) -> EidRecord:
    if draw(st.integers(0, 9)) == 0:
        kind = draw(st.sampled_from(["a", "b", "v6", "r", "out", "iid4"]))
    if kind == "a":
        prefix = EidPrefix(0, IPv4Address(0x0A000000 | draw(st.integers(0, 7)) << 8), draw(st.sampled_from([24, 32])))
    elif kind == "b":
        base = draw(st.sampled_from([0x0AC80000, 0x0AC90000]))
        prefix = EidPrefix(0, IPv4Address(base | draw(st.integers(0, 3))), draw(st.sampled_from([16, 32])))
    elif kind == "v6":
        prefix = EidPrefix(7, IPv6Address(0x20010DB8 << 96 | draw(st.integers(0, 3))), draw(st.sampled_from([48, 128])))
    elif kind == "iid4":
        prefix = EidPrefix(7, IPv4Address(0x0A000000 | draw(st.integers(0, 3))), 32)
    elif kind == "r":
        prefix = EidPrefix(0, IPv4Address(0xAC100000 | draw(st.integers(0, 3))), 32)
    else:
        prefix = EidPrefix(0, IPv4Address(0x0B000000 | draw(st.integers(0, 3))), 32)
    locs = tuple(draw(st.lists(locator, max_size=3)))
    return EidRecord.for_prefix(
        prefix,
        locs,
        ttl=draw(st.sampled_from([0, 1, 3, 1440, 1440, 1440])),
        action=Action(draw(st.sampled_from([0, 0, 1, 6]))),
        authoritative=draw(st.booleans()),
        map_version=draw(st.sampled_from([0, 0, 5])),
    )


SITE_KEYS = {"a": (b"secret", AuthAlg.HMAC_SHA_256_128, 0), "b": (b"bkey", AuthAlg.HMAC_SHA_256_128, 0),
             "v6": (b"v6key", AuthAlg.HMAC_SHA_256_128, 0), "iid4": (b"v6key", AuthAlg.HMAC_SHA_256_128, 0),
             "r": (b"secret", AuthAlg.HMAC_SHA_1_96, 3)}


@st.composite
def map_register(draw: st.DrawFn) -> tuple[bytes, Endpoint]:
    """Mostly coherent registers (records of one site, that site's key), sometimes not."""
    kind = draw(st.sampled_from(["a", "a", "b", "v6", "iid4", "r"]))
    records = draw(st.lists(eid_record(kind), min_size=1, max_size=3))
    key, alg, key_id = SITE_KEYS[kind]
    if draw(st.integers(0, 9)) == 0:
        key = b"wrong"
    if draw(st.integers(0, 19)) == 0:
        key_id = 9
    if draw(st.integers(0, 19)) == 0:
        alg = AuthAlg.HMAC_SHA_1_96 if alg == AuthAlg.HMAC_SHA_256_128 else AuthAlg.HMAC_SHA_256_128
    full = 32 if alg == AuthAlg.HMAC_SHA_256_128 else 20
    auth_len = draw(st.sampled_from([full, full, full - 4]))
    with_xtr = draw(st.booleans())
    xtr_id = draw(st.sampled_from([1, 2, 1 << 100])) if with_xtr else None
    site_id = draw(st.sampled_from([None, 5])) if with_xtr else None
    data = register(
        records,
        key=key,
        key_id=key_id,
        alg=alg,
        nonce=draw(st.integers(0, 2**64 - 1)),
        auth_len=auth_len,
        want_map_notify=draw(st.booleans()),
        proxy_reply=draw(st.booleans()),
        merge=draw(st.booleans()),
        use_ttl=draw(st.booleans()),
        xtr_id=xtr_id,
        site_id=site_id,
    )
    src = ep(draw(st.sampled_from(["203.0.113.1", "203.0.113.1", "203.0.113.2"])),
             draw(st.sampled_from([4342, 4342, 40000])))
    return data, src


def _fields(msg: MapRegister) -> list[tuple[int, int, int, int, int, int, int, int, tuple[LocatorRecord, ...]]]:
    out = []
    for rec in msg.records:
        p = rec.prefix
        out.append((p.iid, p.afi, int(p.address), p.mask_len, rec.ttl, int(rec.action),  # type: ignore[arg-type]
                    rec.map_version, len(rec.locators), rec.locators))
    return out


def _agrees(data: bytes) -> None:
    """parse_register(data) is None, or the decoder accepts ``data`` and agrees."""
    p = parse_register(data)
    if p is None:
        return
    msg = parse_control(data)  # must not raise
    assert isinstance(msg, MapRegister)
    assert (p.key_id, p.alg_id, p.auth_end) == (msg.key_id, msg.alg_id, 16 + len(msg.auth_data))
    assert (p.xtr_id, p.site_id) == (msg.xtr_id, msg.site_id)
    mine = []
    for rv in p.records:
        rd = Reader(rv.locators)
        locs = tuple(LocatorRecord.from_wire(rd) for _ in range(rv.loc_count))
        assert rd.at_end()
        mine.append((rv.iid, rv.afi, rv.addr, rv.mask_len, rv.ttl, rv.action, rv.map_version, rv.loc_count, locs))
    assert mine == _fields(msg)
    q = quick_register(data)
    if q is not None and len(p.records) == 1:
        rv = p.records[0]
        assert (q.afi, q.addr, q.mask_len, q.sig) == (rv.afi, rv.addr, rv.mask_len, rv.sig)


@settings(max_examples=150, deadline=None)
@given(map_register())
def test_parse_register_agrees_with_the_decoder(reg: tuple[bytes, Endpoint]) -> None:
    data, _ = reg
    assert parse_register(data) is not None  # every generated shape is a common one
    _agrees(data)


@settings(max_examples=200, deadline=None)
@given(map_register(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=3),
       st.integers(-8, 8))
def test_parse_register_never_accepts_what_the_decoder_refuses(
    reg: tuple[bytes, Endpoint], flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(reg[0])
    for at, bit in flips:
        data[at % len(data)] ^= 1 << bit
    if cut < 0:
        del data[cut:]
    elif cut:
        data += bytes(cut)
    raw = bytes(data)
    if parse_register(raw) is None:
        return
    try:
        _agrees(raw)
    except DecodeError as e:  # pragma: no cover - the property failing
        raise AssertionError(f"fast path accepted what the decoder refuses: {e}") from None


def test_hmac_digest_is_hmac() -> None:
    import hmac

    for key in (b"k", b"x" * 64, b"y" * 100):
        for alg, name in ((1, "sha1"), (2, "sha256")):
            assert hmac_digest(key, alg, b"data") == hmac.digest(key, b"data", name)


# --- fast path == general path ----------------------------------------------------------


def _state(ms: MapServer, now: float) -> tuple[object, ...]:
    return (
        ms.list_registrations(now=now),
        ms.rejections(),
        ms.counters.as_dict(),
        len(ms.registrations),
        sorted((str(r.prefix), r.expires_at, r.filed_at != 0) for e in ms.registrations.items()
               for r in e.registrations()),
    )


def _run(ms: MapServer, data: bytes, src: Endpoint, now: float) -> tuple[list[tuple[bytes, Endpoint]], list[object]]:
    ms.receive(data, src, MS_ADDR, now)
    return [(s.data, s.dst) for s in ms.poll_sends(now)], ms.poll_events()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(map_register(), st.integers(0, 3), st.floats(0, 200)), min_size=1, max_size=25),
       st.booleans(), st.booleans())
def test_fast_path_equals_general_path(
    steps: list[tuple[tuple[bytes, Endpoint], int, float]], overlap: bool, flagged: bool
) -> None:
    cfg = MapServerConfig(registration_timeout_s=180.0, max_registrations=12, notify_xtr_id_flagged=flagged)
    fast = MapServer(sites(overlap), cfg)
    slow = MapServer(sites(overlap), MapServerConfig(
        registration_timeout_s=180.0, max_registrations=12, notify_xtr_id_flagged=flagged, register_fast_path=False))
    now = 1000.0
    sent: list[bytes] = []
    for (data, src), repeat, dt in steps:
        for _ in range(1 + repeat):  # repeats: identical refreshes (new nonce, same body)
            now += dt
            for ms in (fast, slow):
                if ms.next_deadline() is not None and ms.next_deadline() <= now:  # type: ignore[operator]
                    ms.on_timer(now)
            assert _run(fast, data, src, now) == _run(slow, data, src, now)
            assert _state(fast, now) == _state(slow, now)
            sent.append(data)
            # the nonce changes between refreshes: splice a new one (re-signing)
            data = _renonce(data, now)
    later = now + 10_000
    fast.on_timer(later)
    slow.on_timer(later)
    assert fast.poll_events() == slow.poll_events()
    assert _state(fast, later) == _state(slow, later)


def _renonce(data: bytes, now: float) -> bytes:
    """``data`` with another nonce, re-signed if it verified with a known key."""
    msg = parse_control(data)
    assert isinstance(msg, MapRegister)
    for key in (b"secret", b"bkey", b"v6key", b"wrong"):
        if msg.verify(key):
            nonce = (msg.nonce + int(now * 1000) + 1) % 2**64
            fresh = MapRegister(nonce, msg.records, msg.key_id, msg.alg_id, b"", proxy_reply=msg.proxy_reply,
                                want_map_notify=msg.want_map_notify, merge=msg.merge, use_ttl=msg.use_ttl,
                                xtr_id=msg.xtr_id, site_id=msg.site_id)
            return fresh.signed(key, len(msg.auth_data)).to_bytes()
    return data  # pragma: no cover - every generated register is signed with one of them


# --- forgeries ----------------------------------------------------------------------------


def _one_eid_register(nonce: int, key: bytes = b"secret") -> bytes:
    from harness import record

    return register([record("10.1.2.3/32", "192.0.2.1", "198.51.100.1")], key=key, nonce=nonce, proxy_reply=True)


def test_forged_and_bit_flipped_refreshes_are_rejected_by_the_fast_path() -> None:
    ms = MapServer(sites(), MapServerConfig())
    etr = ep("203.0.113.1", 40000)
    first = _one_eid_register(1)
    assert parse_register(first) is not None and quick_register(first) is not None
    sends, _ = _run(ms, first, etr, 100.0)
    assert len(sends) == 1 and sends[0][0][0] >> 4 == 4  # Map-Notify
    reg = next(iter(ms.registrations.items())).only()
    assert reg is not None and reg.sig is not None
    refresh = _one_eid_register(2)
    forged = _one_eid_register(2, key=b"not-the-key")
    flipped_auth = bytearray(refresh)
    flipped_auth[20] ^= 0x01
    flipped_nonce = bytearray(refresh)
    flipped_nonce[7] ^= 0x80  # the nonce is covered by the HMAC too
    for bad in (forged, bytes(flipped_auth), bytes(flipped_nonce)):
        sends, events = _run(ms, bad, etr, 150.0)
        assert sends == []
        assert [e.reason for e in events] == ["bad-hmac"]  # type: ignore[attr-defined]
        assert reg.last_registered == 100.0 and reg.expires_at == 100.0 + 180.0
    assert ms.counters.rejections["bad-hmac"] == 3
    assert [r["count"] for r in ms.rejections("a")] == [3]
    # the general decoder was never needed: a register the decoder would refuse still is
    sends, _ = _run(ms, refresh, etr, 160.0)
    assert len(sends) == 1 and reg.last_registered == 160.0 and reg.registrations == 2
    notify = parse_control(sends[0][0])
    assert notify.verify(b"secret") and notify.nonce == 2  # type: ignore[union-attr]


def test_refresh_from_another_port_moves_the_etr_only() -> None:
    ms = MapServer(sites(), MapServerConfig())
    _run(ms, _one_eid_register(1), ep("203.0.113.1", 40000), 100.0)
    entry = next(iter(ms.registrations.items()))
    reg = entry.only()
    assert reg is not None
    sends, events = _run(ms, _one_eid_register(2), ep("203.0.113.1", 40001), 110.0)
    assert events == [] and sends[0][1] == ep("203.0.113.1", 40001)
    assert entry.only() is reg and reg.etr is not None and reg.etr[1] == 40001 and reg.registrations == 2
    # another address without xTR-ID is another registrant: full path, merged entry
    _run(ms, _one_eid_register(3), ep("203.0.113.9", 40001), 120.0)
    assert entry.count() == 2 and entry.only() is None


# --- memory layout ------------------------------------------------------------------------


def test_one_registrant_prefixes_share_locators_and_signatures() -> None:
    ms = MapServer(sites(), MapServerConfig(max_registrations=100_000))
    etr = ep("203.0.113.1", 40000)
    for i in range(200):
        rec = EidRecord.for_prefix(EidPrefix(0, IPv4Address(0x0A000000 + i), 32),
                                   (LocatorRecord(ip_address(f"192.0.2.{i % 4 + 1}")),), authoritative=True)
        ms.receive(register([rec], nonce=i), etr, MS_ADDR, 100.0)
    entries = list(ms.registrations.items())
    assert len(entries) == 200
    regs = [e.only() for e in entries]
    assert all(r is not None for r in regs)
    assert not hasattr(entries[0], "__dict__") and not hasattr(regs[0], "__dict__")
    assert all(e._more is None for e in entries)  # no per-prefix dict
    assert len({id(r.locators) for r in regs if r is not None}) == 4
    assert len({id(r.sig) for r in regs if r is not None}) == 4
    assert len({id(r.etr) for r in regs if r is not None}) == 1
    assert len({id(r.filed_at) for r in regs if r is not None}) == 1


def test_bytes_per_registered_eid() -> None:
    """Python heap per registered EID (tracemalloc; the bench measures RSS at 1 M)."""
    ms = MapServer(sites(), MapServerConfig(max_registrations=100_000))
    etr = ep("203.0.113.1", 40000)
    n = 4_000
    data = []
    for i in range(n):
        rec = EidRecord.for_prefix(EidPrefix(0, IPv4Address(0x0A000000 + i), 32),
                                   (LocatorRecord(ip_address(f"192.0.2.{i % 50 + 1}")),
                                    LocatorRecord(ip_address(f"198.51.100.{i % 50 + 1}"))), authoritative=True)
        data.append(register([rec], nonce=i))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, d in enumerate(data):
        ms.receive(d, etr, MS_ADDR, 100.0 + i / 1000)
        if i % 256 == 0:
            ms.poll_sends(0.0)
            ms.poll_events()
    ms.poll_sends(0.0)
    ms.poll_events()
    gc.collect()
    per_eid = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert len(ms.registrations) == n
    print(f"{per_eid:.0f} B per EID")
    assert 100 < per_eid < 800, per_eid


def test_expiry_buckets_refile_without_duplicates() -> None:
    ms = MapServer(sites(), MapServerConfig(registration_timeout_s=180.0))
    etr = ep("203.0.113.1", 40000)
    from harness import record

    long_ttl = register([record("10.1.2.3/32", "192.0.2.1", ttl=10)], nonce=1, use_ttl=True)
    short = register([record("10.1.2.3/32", "192.0.2.1", ttl=1)], nonce=2, use_ttl=True)
    _run(ms, long_ttl, etr, 0.0)  # expires at 600
    _run(ms, short, etr, 10.0)  # changed: expires at 70, filed again earlier
    assert len(ms.expiry) == 2
    ms.on_timer(71.0)
    assert [type(e).__name__ for e in ms.poll_events()] == ["RegistrationExpired"]
    assert len(ms.registrations) == 0
    ms.on_timer(601.0)  # the stale copy in the 600 s bucket is skipped
    assert ms.poll_events() == [] and len(ms.expiry) == 0


def test_random_refresh_order_keeps_every_registration(seed: int = 5) -> None:
    rng = random.Random(seed)
    ms = MapServer(sites(), MapServerConfig(registration_timeout_s=60.0))
    etr = ep("203.0.113.1", 40000)
    regs = [_eid(i) for i in range(50)]
    now = 0.0
    for _ in range(20):
        for i in rng.sample(range(50), 50):
            now += 0.5
            ms.receive(regs[i], etr, MS_ADDR, now)
            ms.on_timer(now) if ms.next_deadline() and ms.next_deadline() <= now else None  # type: ignore[operator]
    assert len(ms.registrations) == 50
    assert ms.counters.registrations["expired"] == 0
    assert len(ms.expiry) == 50


def _eid(i: int) -> bytes:
    rec = EidRecord.for_prefix(EidPrefix(0, IPv4Address(0x0A000000 + i), 32), (LocatorRecord(ip_address("192.0.2.1")),))
    return register([rec], nonce=i, want_map_notify=False)


def test_lcaf_iid_eid_takes_the_parsed_path() -> None:
    rec = EidRecord(LcafInstanceId(7, IPv6Address("2001:db8::1")), 128, (LocatorRecord(ip_address("192.0.2.1")),))
    data = register([rec], key=b"v6key", xtr_id=5)
    p = parse_register(data)
    assert p is not None and p.records[0].iid == 7 and p.xtr_id == 5
    assert quick_register(data) is None
    ms = MapServer(sites(), MapServerConfig())
    sends, events = _run(ms, data, ep("203.0.113.1"), 1.0)
    assert len(sends) == 1 and len(events) == 1
    sends, events = _run(ms, data, ep("203.0.113.7"), 2.0)  # same xTR-ID from elsewhere: a refresh
    assert len(sends) == 1 and events == []
    assert ms.list_registrations()[0]["registrants"][0]["registrations"] == 2


def _pair() -> tuple[MapServer, MapServer]:
    two = [site("x", [("10.1.0.0/16", True)]), site("y", [("10.2.0.0/16", True)])]
    return MapServer(two, MapServerConfig()), MapServer(two, MapServerConfig(register_fast_path=False))


def test_refresh_with_other_host_bits_or_records_of_two_sites_takes_the_full_path() -> None:
    from harness import record

    def unmasked(addr: str) -> EidRecord:
        return EidRecord.for_prefix(EidPrefix(0, IPv4Address(addr), 16), (LocatorRecord(ip_address("192.0.2.1")),))

    etr = ep("203.0.113.1", 40000)
    steps = [
        register([unmasked("10.1.0.1")], nonce=1),
        register([unmasked("10.1.0.2")], nonce=2),  # same entry, other host bits
        register([record("10.2.0.1/32", "192.0.2.1")], nonce=3),
        register([unmasked("10.1.0.2"), record("10.2.0.1/32", "192.0.2.1")], nonce=4),
    ]
    fast, slow = _pair()
    for k, data in enumerate(steps):
        assert _run(fast, data, etr, 10.0 + k) == _run(slow, data, etr, 10.0 + k)
        assert _state(fast, 20.0) == _state(slow, 20.0)
    assert fast.list_registrations(prefix=EidPrefix.parse("10.1.0.0/16"))[0]["registrants"][0]["eid-prefix"] == \
        "10.1.0.2/16"
    assert [r["reason"] for r in fast.rejections()] == ["eid-outside-site-prefixes"]


def test_register_lane_sends_what_receive_queues() -> None:
    """``receive_fast`` (the daemon's lane, via a co-located Map-Resolver too) returns the
    Map-Notify ``receive`` would queue, with the same counters."""
    from harness import record

    from lispnet.core.map_resolver import MapResolver, MapResolverConfig

    etr = ep("203.0.113.1", 40000)
    regs = [
        register([record("10.1.2.3/32", "192.0.2.1")], nonce=1),
        register([record("10.1.2.3/32", "192.0.2.1")], nonce=2),  # identical refresh
        register([record("10.1.2.3/32", "192.0.2.1")], nonce=3, key=b"wrong"),  # rejected: nothing to send
        register([record("10.1.2.4/32", "192.0.2.1")], nonce=4, want_map_notify=False),
        b"\x30\x00\x00\x01",  # truncated: a decode error
    ]
    queued, lane = MapServer(sites(), MapServerConfig()), MapServer(sites(), MapServerConfig())
    mr = MapResolver(MapResolverConfig(), map_server=lane)
    for k, data in enumerate(regs):
        queued.receive(data, etr, MS_ADDR, 10.0 + k)
        want = [(s.data, s.dst) for s in queued.poll_sends(0.0)]
        out = mr.receive_fast(data, etr, MS_ADDR, 10.0 + k)
        assert lane.poll_sends(0.0) == []
        got = [] if out is None else [(out[0], Endpoint(ip_address(out[1]), out[2]))]
        assert got == want
        assert lane.poll_events() == queued.poll_events()
    assert lane.counters.as_dict() == queued.counters.as_dict()
    assert lane.counters.messages_out["map-notify"] == 2
