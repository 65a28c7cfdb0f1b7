"""A worker's Map-Request replica answers exactly like the Map-Server it replicates.

The Map-Server keeps a journal of changed prefixes (``RegistrationTable.journal``); the
updates drained from it (``core.replica.journal_updates``) keep a
:class:`~lispnet.core.replica.RequestReplica` in step, as ``shell/workers.py`` does
between processes.  Whatever the replica answers must be byte-identical to the
Map-Server's answer (same destination too); what it declines goes to the Map-Server.
Registrations, withdrawals, site changes and requests are interleaved at random.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from harness import ecm, map_request
from hypothesis import given, settings
from hypothesis import strategies as st
from test_map_server_fastpath import (
    ITR,
    MS_ADDR,
    PREFIX_BASES,
    _prefix,
    do_register,
    fast_answer,
    registration,
    request,
    sites,
)

from lispnet.core.engine import Endpoint
from lispnet.core.map_server import MapServer, MapServerConfig
from lispnet.core.replica import RequestReplica, journal_updates
from lispnet.wire.enums import Action


def replica_answer(rep: RequestReplica, data: bytes) -> list[tuple[bytes, Endpoint]] | None:
    if not rep.receive(data, ITR, MS_ADDR, 100.0):
        return None
    out = [(d, Endpoint(IPv4Address(host), port)) for d, host, port in rep.sends]
    rep.sends.clear()
    return out


def sync(ms: MapServer, rep: RequestReplica) -> None:
    j = ms.registrations.journal
    assert j is not None
    rep.apply(journal_updates(ms, list(j)))
    j.clear()


@settings(max_examples=150, deadline=None)
@given(
    regs=st.lists(registration, max_size=12),
    steps=st.lists(
        st.one_of(
            request.map(lambda r: ("req", r)),
            registration.map(lambda r: ("reg", r)),
            st.just(("site", None)),
        ),
        max_size=30,
    ),
    plain=st.booleans(),
)
def test_replica_answers_equal_map_server_answers(regs: list[tuple], steps: list[tuple], plain: bool) -> None:  # type: ignore[type-arg]
    ms = MapServer(sites(), MapServerConfig(map_request_rate=0), rng=random.Random(3))
    for base, off, mask, rloc, ttl, proxy in regs:  # before the fork: the replica starts from a copy
        do_register((ms,), _prefix(base, off, mask), rloc, ttl, proxy)
    rep = RequestReplica.from_map_server(ms, rng=random.Random(3))
    ms.registrations.journal = set()
    answered = 0
    for kind, step in steps:
        if kind == "reg":
            base, off, mask, rloc, ttl, proxy = step
            do_register((ms,), _prefix(base, off, mask), rloc, ttl, proxy)
            sync(ms, rep)
            continue
        if kind == "site":  # site "b" changes its unregistered action
            s = sites()[1]
            d = s.to_dict(include_keys=True)
            d["unregistered-action"] = "send-map-request" if s.unregistered_action == Action.DROP else "drop"
            ms.add_site(d)
            rep.set_sites(ms.sites.values(), ms.config)
            sync(ms, rep)
            continue
        base, off, mask, nonce = step
        eid = IPv4Address((base + off) & 0xFFFFFFFF)
        req = map_request(eid, mask_len=mask, nonce=nonce)
        data = req.to_bytes() if plain else ecm(req, sport=4000 + mask)
        got = replica_answer(rep, data)
        if got is None:
            continue  # the worker hands it to the main process
        answered += 1
        assert got == fast_answer(ms, data), (eid, mask)


def test_replica_declines_what_it_cannot_answer() -> None:
    ms = MapServer(sites(), MapServerConfig(map_request_rate=0))
    do_register((ms,), "172.16.0.0/16", "203.0.113.1", 1440, False)  # site c, not proxied: forward
    rep = RequestReplica.from_map_server(ms)
    # a plain request for a forwarded EID needs a new ECM: main process
    assert replica_answer(rep, map_request("172.16.2.3").to_bytes()) is None
    # the ECM is forwarded to the ETR with the E bit
    got = replica_answer(rep, ecm(map_request("172.16.2.3")))
    assert got is not None and got == fast_answer(ms, ecm(map_request("172.16.2.3")))
    assert got[0][1] == Endpoint(IPv4Address("203.0.113.1"), 4342) and got[0][0][0] & 0x02
    # Map-Registers and garbage are never the replica's
    assert not rep.receive(b"\x30" + bytes(40), ITR, MS_ADDR, 1.0)
    assert not rep.receive(b"", ITR, MS_ADDR, 1.0)
    assert not rep.receive(b"\x80\x00", ITR, MS_ADDR, 1.0)
    assert PREFIX_BASES  # shared strategies imported from the fast-path test
