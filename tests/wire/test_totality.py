"""Totality: ``parse_control`` returns a value or raises a DecodeError for any bytes.

Whenever a mutated input is accepted, the value must also re-encode and decode to itself
(``parse(build(v)) == v``): a decoder that accepts what its encoder cannot reproduce is a
bug too.

Budget: well over 100 000 inputs in total, split between Hypothesis (shrinking, so a
failure is readable) and seeded-PRNG loops (cheap, so they can be many):
  * pure random bytes, with the type nibble forced to each message type;
  * valid messages (golden vectors, captures, Hypothesis-built values) with bytes
    flipped, inserted, deleted, truncated or extended, and counts/lengths poked.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies_control import any_control

from lispnet.wire import (
    DecodeError,
    Ecm,
    InfoReply,
    InfoRequest,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    ReferralRecord,
    RequestRecord,
    SharedExtension,
    build,
    parse_control,
)
from lispnet.wire.lcaf import LcafInstanceId
from lispnet.wire.records import EidRecord, LocatorRecord

HERE = Path(__file__).parent


def _seeds() -> list[bytes]:
    seeds = []
    for f in sorted((HERE / "vectors").glob("*.hex")):
        hexs = "".join(ln.split("#", 1)[0].split(":", 1)[-1] for ln in f.read_text().splitlines() if ln.strip())
        data = bytes.fromhex(hexs)
        if data[0] >> 4 in (1, 2, 3, 4, 5, 6, 7, 8):
            seeds.append(data)
    for f in sorted((HERE / "corpus").glob("*.hex")):
        seeds.append(bytes.fromhex("".join(ln.split("#", 1)[0].strip() for ln in f.read_text().splitlines())))
    seeds += [
        bytes.fromhex(h)
        for h in (
            # lispers.net Map-Register with xTR-ID / site-ID, its Map-Notify-Ack, an RLOC-probe,
            # an ECM'd Map-Request; an OOR ECM with DF and a UDP checksum (tests/wire/captures)
            "3200090101dfdfdfddccbbaa000200203cebd99f7e47f0d6f0142513ade8ea795e596fe5dbed16ddea8562bdfc0ccbd5"
            "0000000301181000000000010a0101000000ff0000050001c0a8640b0000000000000000348545a5e59a33a7"
            "0000000000000000",
            "5000000001dfdfdfddccbbaa00020020632d7e1f74280570d7f5662e9e20fd2ffa13ff80552f9dc0c93c0a021a1e0932"
            "0000000000000000348545a5e59a33a70000000000000000",
            "12000001ccc60dfb0c19ca6c00010a0201000001c0a8640b00000000",
            "800000004500003c00000000801124ab0a0101020a020102b1ce10f60028000010000001d3597228426fe2d6"
            "00010a0101020001c0a8640b002000010a020102",
            "800000004500003c00024000ff11f759c0a80102c0a8020210f610f60028787f10000001ffcf867bed8ece7e"
            "0001c0a8010200010a00000b00200001c0a80202",
        )
    ]
    return seeds + [build(m) for m in _constructed()]


def _constructed() -> list[Any]:
    """Messages with the features the captures lack (IPv6, LCAFs, M/I bits, DDT, Info, NAT)."""
    v4, v6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")
    iid = LcafInstanceId(1000, IPv4Address("10.1.0.0"))
    loc = LocatorRecord(v6, local=True)
    rec = EidRecord(iid, 16, (loc, LocatorRecord(v4)), authoritative=True)
    req = MapRequest(
        1,
        iid,
        (v4, v6),
        (RequestRecord(iid, 16, notify=True), RequestRecord(IPv6Address("2001:db8::"), 32)),
        probe=True,
        map_reply_record=rec,
        xtr_id=7,
        site_id=8,
    )
    notify = MapNotify(2, (rec,), alg_id=1, xtr_id=5, rtr_auth=True).signed(b"k")
    return [
        req,
        MapReply(3, (rec, EidRecord(v6, 64, ())), probe=True, security=True, security_data=b"sec"),
        MapRegister(4, (rec,), alg_id=2, want_map_notify=True, xtr_id=1, site_id=2).signed(b"k"),
        notify,
        MapNotifyAck(5, (rec,), alg_id=2).signed(b"k", 16),
        MapReferral(6, (ReferralRecord(iid, 16, (loc,), incomplete=True), ReferralRecord(v6, 48))),
        InfoRequest(7, hostname="xtr-1"),
        InfoReply(8, iid, 16, 1440, nat=LcafInstanceId(0, v4)),
        Ecm(req, v6, IPv6Address("2001:db8::2"), 5000, ddt=True),
        Ecm(notify, v4, IPv4Address("192.0.2.2"), 4342, rtr=True).with_ms_rtr_auth(2, b"r"),
        SharedExtension(3, b"body"),
    ]


SEEDS = _seeds()


def check_total(data: bytes) -> bool:
    """Decode ``data``; True when it was accepted (and then re-encodes to itself)."""
    try:
        msg = parse_control(data)
    except DecodeError:
        return False
    again = build(msg)
    assert parse_control(again) == msg, data.hex()
    return True


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(7)
        if op == 0 and b:  # flip one bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # overwrite a byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # truncate
            del b[rng.randrange(len(b) + 1) :]
        elif op == 3:  # extend
            b += rng.randbytes(rng.randrange(1, 24))
        elif op == 4 and b:  # delete a run
            i = rng.randrange(len(b))
            del b[i : i + rng.randrange(1, 8)]
        elif op == 5:  # insert a run
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randrange(1, 8))
        elif len(b) >= 4:  # poke a likely count/length byte with a boundary value
            i = rng.randrange(len(b))
            b[i] = rng.choice((0, 1, 2, 0x0F, 0x10, 0x1F, 0x20, 0x40, 0x7F, 0x80, 0xFE, 0xFF))
    return bytes(b)


def test_mutated_seeds_prng() -> None:
    rng = random.Random(0x11597)
    n = 0
    accepted = 0
    while n < 100_000:
        for seed in SEEDS:
            accepted += check_total(mutate(rng, seed))
            n += 1
    assert n >= 100_000
    # the mutations must reach the success paths too, not only the first length check
    assert accepted > n // 20


def test_random_bytes_prng() -> None:
    rng = random.Random(4342)
    for i in range(20_000):
        data = bytearray(rng.randbytes(rng.randrange(0, 120)))
        if data:
            data[0] = (i % 16) << 4 | (data[0] & 0x0F)  # every type nibble equally often
        check_total(bytes(data))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    check_total(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_mutated_seeds(seed: bytes, rng: random.Random) -> None:
    check_total(mutate(rng, seed))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_control, st.randoms(use_true_random=False))
def test_mutated_generated(msg: Any, rng: random.Random) -> None:
    data = build(msg)
    check_total(data)
    check_total(mutate(rng, data))
