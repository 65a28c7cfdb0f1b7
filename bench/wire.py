"""Wire codec throughput: parse and build rates for typical LISP messages.

Not a test: it prints numbers.  Run ``python bench/wire.py [--runs N] [--seconds S]``.
Each figure is the median over ``runs`` timing runs of messages per second, one run
being as many iterations as fit in about ``seconds`` (calibrated first).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from ipaddress import IPv4Address

from lispnet.wire import MapRegister, MapRequest, RequestRecord, build, parse_control
from lispnet.wire.data import LispHeader, parse_data_header
from lispnet.wire.enums import AuthAlg
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord


def sample_map_request() -> MapRequest:
    return MapRequest(
        0x0102030405060708,
        IPv4Address("192.0.2.1"),
        (IPv4Address("198.51.100.1"),),
        (RequestRecord(IPv4Address("10.0.0.0"), 8),),
    )


def sample_map_register() -> MapRegister:
    records = tuple(
        EidRecord.for_prefix(
            EidPrefix.parse(f"10.{i}.0.0/16"),
            (
                LocatorRecord(IPv4Address(f"203.0.113.{2 * i + 1}"), 1, 50),
                LocatorRecord(IPv4Address(f"203.0.113.{2 * i + 2}"), 1, 50),
            ),
            ttl=1440,
            authoritative=True,
        )
        for i in range(10)
    )
    return MapRegister(0x1122334455667788, records, alg_id=AuthAlg.HMAC_SHA_256_128, want_map_notify=True).signed(
        b"lisp-test-key"
    )


def rate(fn: Callable[[], object], runs: int, seconds: float) -> tuple[float, float, float]:
    """(median, min, max) calls per second over ``runs`` runs."""
    timer = timeit.Timer(fn)
    n, t = timer.autorange()
    number = max(1, int(n * seconds / max(t, 1e-9)))
    rates = [number / timer.timeit(number) for _ in range(runs)]
    return statistics.median(rates), min(rates), max(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timing runs per figure (median reported)")
    ap.add_argument("--seconds", type=float, default=0.3, help="approximate length of one run")
    args = ap.parse_args(argv)

    req = sample_map_request()
    reg = sample_map_register()
    hdr = LispHeader(nonce=0x123456, lsb=1, instance_id=1000)
    req_b, reg_b, hdr_b = build(req), build(reg), build(hdr)
    pkt = hdr_b + bytes(84)  # a data packet: header + an inner ping
    assert parse_control(req_b) == req and parse_control(reg_b) == reg and parse_data_header(pkt) == hdr

    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("Map-Request parse", len(req_b), lambda: parse_control(req_b)),
        ("Map-Request build", len(req_b), lambda: build(req)),
        ("Map-Register 10x2 parse", len(reg_b), lambda: parse_control(reg_b)),
        ("Map-Register 10x2 build", len(reg_b), lambda: build(reg)),
        ("Map-Register 10x2 sign", len(reg_b), lambda: reg.signed(b"lisp-test-key")),
        ("Map-Register 10x2 verify", len(reg_b), lambda: reg.verify(b"lisp-test-key")),
        ("LISP data header parse", 8, lambda: parse_data_header(pkt)),
        ("LISP data header build", 8, lambda: hdr.to_bytes()),
        ("LISP data header construct+build", 8, lambda: LispHeader(0x123456, 1, False, None, 1000).to_bytes()),
    ]
    print(f"lispnet wire benchmark - Python {platform.python_version()} on {platform.machine()}, "
          f"median of {args.runs} runs of ~{args.seconds}s")
    print(f"{'operation':<34}{'bytes':>6}{'msg/s (median)':>17}{'min':>12}{'max':>12}{'us/msg':>9}")
    for name, size, fn in cases:
        med, lo, hi = rate(fn, args.runs, args.seconds)
        print(f"{name:<34}{size:>6}{med:>17,.0f}{lo:>12,.0f}{hi:>12,.0f}{1e6 / med:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
