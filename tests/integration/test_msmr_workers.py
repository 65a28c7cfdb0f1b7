"""SO_REUSEPORT Map-Request workers (``[node] workers``) over real UDP on loopback.

A ``lispnet run`` MS/MR with ``workers = 3`` (the main process and two forked workers
share the control port).  EIDs registered after start - from many source ports, so the
kernel spreads the Map-Registers over all three processes - each get their Map-Notify;
Map-Requests from many source ports (so every process sees some) are answered with the
right proxy or negative reply; the workers report answering; the workers exit with the
daemon after SIGTERM and after the main process is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
from test_msmr_daemon import Node, free_port, start

from lispnet.wire.control import (
    Ecm,
    MapNotify,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    parse_control,
)
from lispnet.wire.enums import AuthAlg
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

KEY = b"wkey"
LO = "127.0.0.1"


def make_config(tmp: Path) -> Path:
    api, port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    text = f"""
[node]
name = "workers"
roles = ["map-server", "map-resolver"]
api = "{LO}:{api}"
control-addresses = ["{LO}"]
control-port = {port}
log-level = "info"
workers = 3

[[site]]
name = "w"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-256", key = "{KEY.decode()}" }}]
eid-prefixes = [{{ prefix = "10.0.0.0/8", instance-id = 0, accept-more-specifics = true }}]

[map-resolver-options]
map-request-rate-limit = 0
"""
    path = tmp / "workers.toml"
    path.write_text(text)
    return path


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.fixture
def wnode(tmp_path: Path) -> Iterator[Node]:
    n = start(make_config(tmp_path), tmp_path / "daemon.log")
    kids: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(kids) < 2:
        kids = children(n.proc.pid)
        time.sleep(0.05)
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()
        for p in kids:  # never leave a worker behind, whatever the test did
            if alive(p):
                os.kill(p, signal.SIGKILL)


def register(sock: socket.socket, port: int, prefix: str, rloc: str, proxy: bool, nonce: int) -> None:
    rec = EidRecord.for_prefix(EidPrefix.parse(prefix), (LocatorRecord(ip_address(rloc)),), ttl=3)
    msg = MapRegister(nonce, (rec,), key_id=0, alg_id=AuthAlg.HMAC_SHA_256_128, proxy_reply=proxy,
                      want_map_notify=True).signed(KEY)
    sock.sendto(msg.to_bytes(), (LO, port))


def request(sock: socket.socket, reply_port: int, port: int, eid: str, nonce: int) -> None:
    req = MapRequest(nonce, itr_rlocs=(ip_address(LO),), records=(RequestRecord(ip_address(eid), 32),))
    sock.sendto(Ecm(req, ip_address(LO), ip_address(eid), reply_port).to_bytes(), (LO, port))


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LO, 0))
    s.settimeout(3)
    return s


def test_workers_answer_registrations_made_after_start(wnode: Node) -> None:
    kids = children(wnode.proc.pid)
    assert len(kids) == 2, kids
    # 24 EIDs, each registered from its own socket: the Map-Registers land on every
    # process; each must get its Map-Notify (workers hand them to the main process).
    etrs = [udp() for _ in range(24)]
    for i, s in enumerate(etrs):
        register(s, wnode.port, f"10.1.{i}.1/32", f"198.51.100.{i + 1}", proxy=True, nonce=1000 + i)
    for i, s in enumerate(etrs):
        data, _ = s.recvfrom(2048)
        notify = parse_control(data)
        assert isinstance(notify, MapNotify) and notify.nonce == 1000 + i
        assert notify.records[0].prefix == EidPrefix.parse(f"10.1.{i}.1/32")

    reply = udp()
    rport = reply.getsockname()[1]
    senders = [udp() for _ in range(24)]
    # requests from many source ports: every registered EID asked twice, plus negatives
    expect: dict[int, tuple[str, int, str | None]] = {}
    nonce = 1
    for rnd in range(2):
        for i, s in enumerate(senders):
            expect[nonce] = (f"10.1.{i}.1", 32, f"198.51.100.{i + 1}")
            request(s, rport, wnode.port, f"10.1.{i}.1", nonce)
            nonce += 1
            eid = f"10.9.{i}.{rnd + 7}" if i % 2 else f"11.{i}.0.{rnd + 1}"
            expect[nonce] = (eid, -1, None)
            request(s, rport, wnode.port, eid, nonce)
            nonce += 1
    got: dict[int, MapReply] = {}
    while len(got) < len(expect):
        try:
            data, _ = reply.recvfrom(2048)
        except TimeoutError:
            break
        msg = parse_control(data)
        assert isinstance(msg, MapReply)
        got[msg.nonce] = msg
    assert set(got) == set(expect), f"missing replies for nonces {sorted(set(expect) - set(got))}"
    for n, (eid, mask, rloc) in expect.items():
        rec = got[n].records[0]
        assert rec.prefix.contains(EidPrefix(0, IPv4Address(eid), 32)), (eid, rec)
        if rloc is not None:
            assert rec.mask_len == mask and [str(loc.address) for loc in rec.locators] == [rloc]
        else:
            assert not rec.locators
            assert rec.ttl == (1 if eid.startswith("10.") else 15), (eid, rec.ttl)

    # a change after start reaches the workers: re-register one EID with another RLOC
    register(etrs[0], wnode.port, "10.1.0.1/32", "203.0.113.77", proxy=True, nonce=5000)
    assert isinstance(parse_control(etrs[0].recvfrom(2048)[0]), MapNotify)
    time.sleep(0.3)
    for k, s in enumerate(senders):
        request(s, rport, wnode.port, "10.1.0.1", 9000 + k)
    seen = set()
    for _ in senders:
        msg = parse_control(reply.recvfrom(2048)[0])
        assert isinstance(msg, MapReply)
        assert [str(loc.address) for loc in msg.records[0].locators] == ["203.0.113.77"]
        seen.add(msg.nonce)
    assert len(seen) == len(senders)

    # the workers report what they did (once a second)
    time.sleep(1.5)
    stats = wnode.get("/stats")["daemon"]["workers"]
    per = stats["per-worker"]
    assert len(per) == 2
    assert sum(w.get("answered", 0) for w in per) > 0, stats
    assert sum(w.get("forwarded", 0) for w in per) > 0, stats  # Map-Registers handed to main
    for s in (*etrs, *senders, reply):
        s.close()

    # SIGTERM: clean exit, no workers left
    assert wnode.stop() == 0
    assert wait_gone(kids) == []


def test_workers_die_with_a_killed_main_process(wnode: Node) -> None:
    kids = children(wnode.proc.pid)
    assert len(kids) == 2
    wnode.proc.send_signal(signal.SIGKILL)
    wnode.proc.wait()
    assert wait_gone(kids) == [], "orphaned workers"


def test_workers_config_without_map_server_serves_in_process(tmp_path: Path) -> None:
    # a map-resolver alone cannot use workers: logged, one process
    api, port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    cfg = tmp_path / "mr.toml"
    cfg.write_text(f"""
[node]
name = "mr"
roles = ["map-resolver"]
api = "{LO}:{api}"
control-addresses = ["{LO}"]
control-port = {port}
workers = 2
""")
    n = start(cfg, tmp_path / "mr.log")
    try:
        assert children(n.proc.pid) == []
        assert n.stop() == 0
    finally:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()
    assert "only a map-server role can use workers" in (tmp_path / "mr.log").read_text()

