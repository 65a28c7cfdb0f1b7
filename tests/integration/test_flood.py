"""A Map-Request flood does not starve Map-Register processing nor grow the daemon.

``lispnet run`` (MS/MR from examples/msmr.toml, free ports) is flooded with Map-Requests
from one source by a separate process, far above the per-source rate limit, while an ETR
registers over and over.  Every registration must be answered (the ETR retransmits like
a real one if the kernel dropped its datagram in the flood), the flood must show up as
rate-limited requests in the counters, and the daemon's RSS must stay bounded.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_msmr_daemon import Etr, Node, make_config, start

from lispnet.wire.control import MapNotify, MapRequest, RequestRecord, parse_control
from lispnet.wire.prefix import EidPrefix


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flood(port: int, seconds: float, counter: multiprocessing.sharedctypes.Synchronized) -> None:  # type: ignore[type-arg]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    packets = [
        MapRequest(
            nonce=i,
            source_eid=EidPrefix.parse("10.9.9.9/32").address,
            itr_rlocs=(EidPrefix.parse("127.0.0.1/32").address,),
            records=(RequestRecord.for_prefix(EidPrefix.parse(f"10.{i % 250}.{i % 200}.1/32")),),
        ).to_bytes()
        for i in range(512)
    ]
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for p in packets:
            try:
                sock.sendto(p, ("127.0.0.1", port))
                sent += 1
            except BlockingIOError:
                pass
        try:  # throw the replies away so our own buffer never matters
            while True:
                sock.recv(65535)
        except BlockingIOError:
            pass
    counter.value = sent


def _find_counts(obj: object, key: str) -> list[int]:
    """Every integer stored under ``key`` anywhere in a JSON document."""
    found: list[int] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, int):
                found.append(v)
            found += _find_counts(v, key)
    elif isinstance(obj, list):
        for v in obj:
            found += _find_counts(v, key)
    return found


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = start(make_config(tmp_path), tmp_path / "daemon.log")
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()


def test_request_flood_does_not_starve_registrations(node: Node) -> None:
    rss_before = _rss_kib(node.proc.pid)
    sent = multiprocessing.Value("q", 0)
    flooder = multiprocessing.Process(target=_flood, args=(node.port, 6.0, sent))
    flooder.start()
    etr = Etr()
    try:
        time.sleep(0.5)  # the flood is running
        answered = 0
        attempts = 0
        for i in range(20):
            nonce = 0x5000 + i
            for _ in range(5):  # a real ETR retransmits until notified
                attempts += 1
                etr.register(node.port, b"s3cret", "10.1.1.0/24", nonce=nonce)
                msg: MapNotify | None = None
                while (data := etr.receive(0.5)) is not None:
                    m = parse_control(data)
                    assert isinstance(m, MapNotify)
                    msg = m
                    if msg.nonce == nonce:
                        break
                    assert msg.nonce < nonce  # a late answer to an earlier retransmission
                if msg is not None and msg.nonce == nonce:
                    answered += 1
                    break
            time.sleep(0.1)
        assert answered == 20, f"only {answered}/20 registrations answered in {attempts} attempts"
        assert attempts <= 40, f"{attempts} sends needed for 20 registrations"
    finally:
        etr.close()
        flooder.join(timeout=30)
    assert sent.value > 20_000, f"the flood was too weak to mean anything ({sent.value} requests)"
    stats = httpx.get(node.api + "/stats", timeout=5).json()
    limited = _find_counts(stats, "rate-limited")
    # one source at > 3 k/s against a limit of 1000/s: most of the flood is refused cheaply
    assert limited and max(limited) > sent.value // 4, (limited, sent.value, stats)
    rss_after = _rss_kib(node.proc.pid)
    assert rss_after - rss_before < 64 * 1024, f"RSS grew from {rss_before} to {rss_after} KiB under the flood"
    assert node.proc.poll() is None, "the daemon died under the flood"
