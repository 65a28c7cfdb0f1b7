"""Reply templates handed to the kernel Map-Request offload answer exactly like the
Map-Server's full decoder.

A model of the kernel program (``dataplane/bpf/mapreq.bpf.c``) is driven from the raw
key/value bytes ``OffloadTable`` produces: longest match of (instance-id, AFI, EID) over
the inserted keys, answer = template with the request's nonce, sent to the ITR-RLOC and
the inner UDP source port.  Against a second Map-Server that answers every request through
``handle_map_request`` on the decoded message, over random registrations, withdrawals and
requests, every answer of the model (or, on a miss, of the daemon's lane, which then
teaches the model) must be byte-identical, and counted under the same outcome.
"""

from __future__ import annotations

import random
import socket
import struct
from collections import Counter
from ipaddress import IPv4Address, IPv6Address, ip_address

from harness import ecm, ep, map_request, record, register, site
from hypothesis import given, settings
from hypothesis import strategies as st

from lispnet.core.engine import Endpoint
from lispnet.core.map_server import MapServer, MapServerConfig
from lispnet.core.replica import journal_hub
from lispnet.core.replytmpl import (
    KEY_SIZE,
    KIND_NAMES,
    TEMPLATE_MAX,
    VALUE_SIZE,
    OffloadTable,
    answer_from,
    eid_of_key,
    kernel_key,
    kernel_value,
    reply_eid,
    template_of,
)
from lispnet.db.sites import SitePolicy
from lispnet.wire.control import Ecm, MapReply, MapRequest, parse_control
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

MS_ADDR = ep("192.0.2.1")
ETR = ep("203.0.113.1", 40001)
ITR = ep("192.0.2.10", 61000)


def sites() -> list[SitePolicy]:
    return [
        site("a", [("10.0.0.0/8", True)], proxy_reply=True),
        site("b", ["10.200.0.0/16", ("10.201.0.0/16", True)], key=b"bkey", unregistered_action=Action.DROP),
        site("c", [("172.16.0.0/12", True)]),
        site("d", [("10.0.0.0/8", True)], key=b"dkey", iid=7, proxy_reply=True),
    ]


def new_ms() -> MapServer:
    return MapServer(sites(), MapServerConfig(map_request_rate=0), rng=random.Random(3))


def _key_for(prefix: str, iid: int) -> bytes:
    if iid == 7:
        return b"dkey"
    return b"bkey" if prefix.startswith(("10.200.", "10.201.")) else b"secret"


class KernelModel:
    """The program's lookup over the raw keys and values it was given."""

    def __init__(self) -> None:
        self.entries: dict[bytes, bytes] = {}

    def lookup(self, iid: int, eid: IPv4Address, mask_len: int) -> bytes | None:
        best: tuple[int, bytes] | None = None
        for key, value in self.entries.items():
            k = eid_of_key(key)
            if k.iid != iid or k.afi != 1 or k.mask_len > mask_len:
                continue
            net = int.from_bytes(k.packed, "big") >> (32 - k.mask_len) if k.mask_len else 0
            if (int(eid) >> (32 - k.mask_len) if k.mask_len else 0) != net:
                continue
            if best is None or k.mask_len > best[0]:
                best = (k.mask_len, value)
        return None if best is None else best[1]


def value_parts(value: bytes) -> tuple[bytes, int, int]:
    length, kind, total = struct.unpack_from("=HBxI", value)
    return value[8 : 8 + length], kind, total


PREFIX_BASES = [0x0A000000, 0x0AC80000, 0x0AC90000, 0xAC100000]

registration = st.tuples(
    st.sampled_from(PREFIX_BASES),
    st.integers(0, 0xFFFF),
    st.sampled_from([8, 12, 16, 20, 24, 28, 32]),
    st.sampled_from(["203.0.113.1", "203.0.113.2"]),
    st.sampled_from([1440, 60, 0]),  # 0 = withdraw
    st.booleans(),
    st.sampled_from([0, 0, 7]),
)
request = st.tuples(
    st.sampled_from([*PREFIX_BASES, 0x0B000000, 0xC0A80000]),
    st.integers(0, 0xFFFFFF),
    st.sampled_from([32, 32, 32, 24, 16]),
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 0, 7]),
)


def _prefix(base: int, offset: int, mask: int) -> str:
    addr = IPv4Address((base + (offset << 8)) & 0xFFFFFFFF)
    net = int(addr) & ((0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF)
    return f"{IPv4Address(net)}/{mask}"


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.one_of(request.map(lambda r: ("req", r)), registration.map(lambda r: ("reg", r))),
                      min_size=1, max_size=40))
def test_kernel_model_answers_like_the_full_decoder(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    daemon, slow = new_ms(), new_ms()
    table = OffloadTable(daemon)
    kernel = KernelModel()

    def on_journal(prefixes: list[EidPrefix]) -> None:
        for key in table.changed(prefixes):
            kernel.entries.pop(key, None)

    hub = journal_hub(daemon)
    hub.subscribe(on_journal)
    kernel_kinds: Counter[str] = Counter()
    for kind, step in steps:
        if kind == "reg":
            base, off, mask, rloc, ttl, proxy, iid = step
            text = _prefix(base, off, mask)
            data = register([record(text, rloc, ttl=ttl, iid=iid)], key=_key_for(text, iid), proxy_reply=proxy,
                            want_map_notify=False)
            for ms in (daemon, slow):
                ms.receive(data, ETR, MS_ADDR, 100.0)
                ms.poll_sends(100.0)
            hub.drain()  # what the offload's poll_sends does after the batch
            on_journal([])
            continue
        base, off, mask, nonce, iid = step
        eid = IPv4Address((base + off) & 0xFFFFFFFF)
        data = ecm(map_request(eid, mask_len=mask, iid=iid, nonce=nonce), sport=4000 + mask)
        msg = parse_control(data)
        assert isinstance(msg, Ecm) and isinstance(msg.message, MapRequest)
        before = Counter(slow.counters.requests)
        slow.handle_map_request(msg.message, ITR, MS_ADDR, 100.0, msg.inner_sport, data, msg)
        want = [(s.data, s.dst) for s in slow.poll_sends(100.0)]
        hit = kernel.lookup(iid, eid, mask)
        if hit is not None:
            tmpl, k, _ = value_parts(hit)
            got = [(answer_from(tmpl, nonce), Endpoint(ip_address("192.0.2.10"), 4000 + mask))]
            assert got == want, (eid, mask, iid)
            outcome = Counter(slow.counters.requests)
            outcome.subtract(before)
            assert +outcome == Counter({KIND_NAMES[k]: 1})
            kernel_kinds[KIND_NAMES[k]] += 1
            continue
        out = daemon.receive_fast(data, ITR, MS_ADDR, 100.0)
        queued = [(s.data, s.dst) for s in daemon.poll_sends(100.0)]
        if out is None:
            assert queued == want
            continue
        assert [(out[0], Endpoint(ip_address(out[1]), out[2]))] == want
        ins = table.learn(out[0])
        if ins is not None:
            key, value = ins
            assert len(key) == KEY_SIZE and len(value) == VALUE_SIZE
            kernel.entries[key] = value
    # what the kernel answered plus what the daemon answered = what the full path counted
    total = Counter(daemon.counters.requests)
    total.update(kernel_kinds)
    assert +total == +Counter(slow.counters.requests)


def test_proxy_entry_only_for_a_leaf_registration() -> None:
    ms = new_ms()
    table = OffloadTable(ms)
    for text, proxy in (("10.1.0.0/16", True), ("10.1.2.0/24", False)):
        ms.receive(register([record(text, "203.0.113.1")], proxy_reply=proxy, want_map_notify=False),
                   ETR, MS_ADDR, 100.0)
    ms.poll_sends(100.0)
    assert table.changed([]) == []  # (the offload calls this after every batch)
    out = ms.receive_fast(ecm(map_request("10.1.9.9")), ITR, MS_ADDR, 100.0)
    assert out is not None and reply_eid(out[0]) is not None
    assert table.learn(out[0]) is None  # 10.1.0.0/16 has 10.1.2.0/24 inside: not offloadable
    assert table.stats()["not-offloaded"] == 1


def test_new_more_specific_registration_removes_the_covering_entry() -> None:
    ms = new_ms()
    table = OffloadTable(ms)
    hub = journal_hub(ms)
    removed: list[bytes] = []
    hub.subscribe(lambda ps: removed.extend(table.changed(ps)))
    ms.receive(register([record("10.1.0.0/16", "203.0.113.1")], proxy_reply=True, want_map_notify=False),
               ETR, MS_ADDR, 100.0)
    hub.drain()
    out = ms.receive_fast(ecm(map_request("10.1.9.9")), ITR, MS_ADDR, 100.0)
    assert out is not None
    ins = table.learn(out[0])
    assert ins is not None
    neg = ms.receive_fast(ecm(map_request("11.1.1.1")), ITR, MS_ADDR, 100.0)
    assert neg is not None
    neg_ins = table.learn(neg[0])
    assert neg_ins is not None and value_parts(neg_ins[1])[1] == 3  # non-EID space
    ms.receive(register([record("10.1.2.0/24", "203.0.113.1")], want_map_notify=False), ETR, MS_ADDR, 100.0)
    hub.drain()
    assert set(removed) == {ins[0], neg_ins[0]}  # the leaf is gone, and negatives go with a new prefix
    assert len(table) == 0


def _udp_checksum(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> int:
    length = 8 + len(payload)
    data = src + dst + struct.pack("!BBH", 0, 17, length) + struct.pack("!HHHH", sport, dport, length, 0) + payload
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF
    return c or 0xFFFF


@given(nonce=st.integers(0, 2**64 - 1), sport=st.integers(1, 65535), n_locs=st.integers(0, 8),
       v6=st.booleans(), iid=st.sampled_from([0, 1, 0xFFFFFF]))
def test_value_sum_gives_the_udp_checksum(nonce: int, sport: int, n_locs: int, v6: bool, iid: int) -> None:
    """The program's checksum arithmetic (template sum + nonce + pseudo header + ports)
    equals the UDP checksum over the datagram it sends."""
    addr = IPv6Address("2001:db8::") if v6 else IPv4Address("10.1.0.0")
    prefix = EidPrefix(iid, addr, 48 if v6 else 16)
    locs = tuple(LocatorRecord(ip_address(f"192.0.2.{i + 1}"), 1, 10) for i in range(n_locs))
    reply = MapReply(nonce, (EidRecord.for_prefix(prefix, locs, ttl=60),)).to_bytes()
    eid = reply_eid(reply)
    assert eid is not None and eid.prefix() == prefix
    tmpl = template_of(reply)
    if len(tmpl) > TEMPLATE_MAX:
        return
    value = kernel_value(tmpl, 1)
    body, _, total = value_parts(value)
    assert body == tmpl and answer_from(body, nonce) == reply
    src, dst = socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2")
    s = total + sum(struct.unpack("!4H", nonce.to_bytes(8, "big")))
    s += sum(struct.unpack("!4H", src + dst)) + 17 + 8 + len(tmpl) + 4342 + sport + 8 + len(tmpl)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert ((~s & 0xFFFF) or 0xFFFF) == _udp_checksum(dst, src, 4342, sport, reply)
    assert eid_of_key(kernel_key(eid)) == eid
