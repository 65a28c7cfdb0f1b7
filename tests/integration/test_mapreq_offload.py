"""The kernel Map-Request offload (``map-request-offload = "ebpf"``) over real UDP.

Each daemon runs in a fresh network namespace (``lnmo-*``, its own lo, deleted
afterwards), so the tc program is only ever attached to a loopback the test created.
The test registers a proxy EID with a Map-Register, asks for proxy, static (instance-id
LCAF), unregistered, non-EID and IPv6 EIDs: the first answer of each comes from the
daemon (which teaches the kernel), the next ones from the kernel, byte-identical but for
the nonce; a request of a shape the program leaves alone is still answered by the daemon
with the same bytes; the kernel's answers show in ``/stats`` and ``/metrics``; an API
write invalidates a cached negative answer; the per-source rate limit holds in the
kernel; stopping the daemon removes the tc filter, the clsact qdisc and the program; a
killed daemon's program stops answering once its heartbeat lapses.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from lispnet.core.map_server import MapServer, MapServerConfig
from lispnet.dataplane import bpf_build, libbpf
from lispnet.shell import mapreq_offload
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

T = TypeVar("T")
LO = "127.0.0.1"
PORT = 4342
API = "127.0.0.1:8080"
KEY = b"offload-key"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not libbpf.available() or bpf_build.find_clang() is None and not bpf_build.MAPREQ_OBJECT.exists(),
    reason="needs root, libbpf and the mapreq BPF object (or clang to build it)",
)

CONFIG = """
[node]
name = "offload"
roles = ["map-server", "map-resolver"]
api = "{api}"
control-addresses = ["{lo}"]
control-port = {port}
log-level = "info"
map-request-offload = "ebpf"

[[site]]
name = "a"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-256", key = "{key}" }}]
eid-prefixes = [{{ prefix = "10.0.0.0/8", accept-more-specifics = true }},
                {{ prefix = "10.0.0.0/8", instance-id = 7, accept-more-specifics = true }}]

[[static-mapping]]
eid-prefix = "10.2.0.0/16"
instance-id = 7
rlocs = [{{ address = "192.0.2.7", priority = 1, weight = 100 }}]

[map-resolver-options]
map-request-rate-limit = {rate}
"""


@dataclass
class Daemon:
    ns: str
    proc: subprocess.Popen[bytes]
    log: Path

    def inside(self, fn: Callable[[], T]) -> T:
        with libbpf.netns(self.ns):
            return fn()

    def get(self, path: str) -> Any:
        def call() -> Any:
            r = httpx.get(f"http://{API}{path}", timeout=5)
            r.raise_for_status()
            return r.json() if path != "/metrics" else r.text
        return self.inside(call)

    def stats(self) -> dict[str, Any]:
        st: dict[str, Any] = self.get("/stats")
        return st

    def offload(self) -> dict[str, Any]:
        """The offload's stats (wherever the daemon nests the mapping stats)."""
        found: list[dict[str, Any]] = []

        def walk(d: Any) -> None:
            if isinstance(d, dict):
                if "map-request-offload" in d:
                    found.append(d["map-request-offload"])
                for v in d.values():
                    walk(v)
        walk(self.stats())
        assert found, self.stats()
        return found[0]

    def sh(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], capture_output=True, text=True, check=False)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return int(self.proc.returncode)


def _start(tmp: Path, rate: int, tag: str = "") -> Iterator[Daemon]:
    ns = f"lnmo-t{os.getpid()}-{rate}{tag}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        cfg = tmp / f"offload-{rate}.toml"
        cfg.write_text(CONFIG.format(api=API, lo=LO, port=PORT, key=KEY.decode(), rate=rate))
        log = tmp / f"daemon-{rate}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "lispnet", "run", str(cfg)],
                                    stdout=f, stderr=subprocess.STDOUT)
        d = Daemon(ns, proc, log)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                d.stats()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError("daemon did not come up:\n" + log.read_text()) from None
                time.sleep(0.2)
        yield d
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    yield from _start(tmp_path_factory.mktemp("offload"), 0)


class Client:
    """A UDP socket inside the daemon's namespace."""

    def __init__(self, d: Daemon) -> None:
        self.sock = d.inside(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        d.inside(lambda: self.sock.bind((LO, 0)))
        self.sock.settimeout(3)
        self.port = int(self.sock.getsockname()[1])

    def ask(self, data: bytes) -> tuple[bytes, tuple[str, int]]:
        self.sock.sendto(data, (LO, PORT))
        d, addr = self.sock.recvfrom(4096)
        return d, addr

    def close(self) -> None:
        self.sock.close()


def request(eid: str, nonce: int, port: int, iid: int = 0, itrs: tuple[str, ...] = (LO,), plain: bool = False) -> bytes:
    addr = ip_address(eid)
    prefix = EidPrefix(iid, addr, addr.max_prefixlen)
    req = MapRequest(nonce, itr_rlocs=tuple(ip_address(a) for a in itrs), records=(RequestRecord.for_prefix(prefix),))
    if plain:
        return req.to_bytes()
    inner_dst = addr if isinstance(addr, IPv4Address) else ip_address(LO)
    return Ecm(req, ip_address(LO), inner_dst, port).to_bytes()


def without_nonce(reply: bytes) -> bytes:
    return reply[:4] + bytes(8) + reply[12:]


def register(d: Daemon) -> None:
    rec = EidRecord.for_prefix(
        EidPrefix.parse("10.1.0.0/16"),
        (LocatorRecord(ip_address("192.0.2.1"), 1, 50), LocatorRecord(ip_address("198.51.100.1"), 1, 50)),
        ttl=1440, authoritative=True,
    )
    msg = MapRegister(0x55, (rec,), key_id=0, alg_id=AuthAlg.HMAC_SHA_256_128, proxy_reply=True,
                      want_map_notify=True)
    c = Client(d)
    try:
        reply, _ = c.ask(msg.signed(KEY).to_bytes())
        assert isinstance(parse_control(reply), MapNotify)
    finally:
        c.close()


def test_kernel_answers_are_the_daemons(daemon: Daemon) -> None:
    off = daemon.offload()
    assert off["interface"] == "lo" and off["program-id"]
    register(daemon)
    c = Client(daemon)
    try:
        cases = [("10.1.2.3", 0, "proxy-reply"), ("10.2.3.4", 7, "proxy-reply"),
                 ("10.9.9.9", 0, "negative-unregistered"), ("11.1.1.1", 0, "negative-non-eid"),
                 ("2001:db8::1", 0, "negative-non-eid")]
        firsts: dict[str, bytes] = {}
        for i, (eid, iid, _) in enumerate(cases):
            first, src = c.ask(request(eid, 1000 + i, c.port, iid))
            assert src == (LO, PORT)
            reply = parse_control(first)
            assert isinstance(reply, MapReply) and reply.nonce == 1000 + i
            firsts[eid] = first
            for k in range(3):  # the kernel's turn: same bytes, the new nonce
                nonce = (0xA5 << 56) | (i << 8) | k
                again, src = c.ask(request(eid, nonce, c.port, iid))
                assert src == (LO, PORT)
                assert without_nonce(again) == without_nonce(first), eid
                assert int.from_bytes(again[4:12], "big") == nonce
        # plain (non-ECM) Map-Request: the reply goes to the source port
        plain, _ = c.ask(request("10.1.2.3", 77, c.port, plain=True))
        assert without_nonce(plain) == without_nonce(firsts["10.1.2.3"])
        kernel = daemon.offload()["kernel"]
        assert kernel["proxy-reply"] >= 7 and kernel["plain-answered"] >= 1, kernel
        assert kernel["negative-unregistered"] >= 3 and kernel["negative-non-eid"] >= 6, kernel
        assert kernel["ecm-answered"] >= 15 and kernel["rewrite-errors"] == 0, kernel

        # a shape the program leaves alone (two ITR-RLOCs): the daemon answers, same bytes
        passed = kernel["passed-to-daemon"]
        other, _ = c.ask(request("10.1.2.3", 99, c.port, itrs=(LO, "127.0.0.2")))
        assert without_nonce(other) == without_nonce(firsts["10.1.2.3"])
        assert daemon.offload()["kernel"]["passed-to-daemon"] == passed + 1

        # the kernel's answers are in the engines' counters: API and /metrics
        st = daemon.stats()
        text = repr(st)
        assert "proxy-reply" in text
        metrics = daemon.get("/metrics")
        m = re.search(r'lispnet_mapping_requests_total\{engine="map-server",outcome="proxy-reply"\} (\d+)', metrics)
        assert m is not None and int(m.group(1)) >= kernel["proxy-reply"] + 2, metrics[:2000]

        # an API write covering a cached negative prefix: the next answer is the new mapping
        sm = {"eid-prefix": "10.9.0.0/16", "rlocs": [{"address": "203.0.113.9", "priority": 1, "weight": 100}]}
        r = daemon.inside(lambda: httpx.put(f"http://{API}/static-mappings", json=sm, timeout=5))
        assert r.status_code in (200, 201), r.text
        now, _ = c.ask(request("10.9.9.9", 5, c.port))
        rep = parse_control(now)
        assert isinstance(rep, MapReply) and rep.records[0].locators, rep
        assert str(rep.records[0].locators[0].address) == "203.0.113.9"
    finally:
        c.close()


def _udp_packet(sport: int, payload: bytes, check: int | None) -> bytes:
    """IPv4 + UDP from LO:sport to the control port; ``check`` None = the right checksum."""
    src = dst = socket.inet_aton(LO)
    length = 8 + len(payload)
    if check is None:
        data = src + dst + struct.pack("!BBH", 0, 17, length) + struct.pack("!HHHH", sport, PORT, length, 0) + payload
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        check = (~total & 0xFFFF) or 0xFFFF
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0, src, dst)
    return ip + struct.pack("!HHHH", sport, PORT, length, check) + payload


def test_request_udp_checksum(daemon: Daemon) -> None:
    """Full software checksums (raw socket, no offload by the device): a right one or
    none is answered by the kernel, a wrong one goes to the stack, which drops it."""
    c = Client(daemon)
    raw = daemon.inside(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
    try:
        c.ask(request("11.1.1.1", 1, c.port))  # the daemon answers and teaches the kernel
        before = daemon.offload()["kernel"]
        for nonce, check in ((11, None), (12, 0)):
            raw.sendto(_udp_packet(c.port, request("11.1.1.1", nonce, c.port), check), (LO, 0))
            reply, _ = c.sock.recvfrom(4096)
            assert int.from_bytes(reply[4:12], "big") == nonce
        good = _udp_packet(c.port, request("11.1.1.1", 13, c.port), None)
        bad_check = struct.unpack_from("!H", good, 26)[0] ^ 0x0101
        raw.sendto(good[:26] + struct.pack("!H", bad_check) + good[28:], (LO, 0))
        c.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            c.sock.recvfrom(4096)
        after = daemon.offload()["kernel"]
        assert after["negative-non-eid"] == before["negative-non-eid"] + 2
        assert after["passed-to-daemon"] == before["passed-to-daemon"] + 1
    finally:
        raw.close()
        c.close()


def test_rate_limit_and_clean_stop(tmp_path: Path) -> None:
    gen = _start(tmp_path, 5)
    d = next(gen)
    try:
        c = Client(d)
        c.ask(request("11.1.1.1", 1, c.port))  # the daemon answers and teaches the kernel
        time.sleep(1.2)  # the bucket refills
        c.sock.settimeout(0.3)
        answered = 0
        for i in range(40):
            c.sock.sendto(request("11.1.1.1", 100 + i, c.port), (LO, PORT))
        while True:
            try:
                c.sock.recvfrom(4096)
            except TimeoutError:
                break
            answered += 1
        c.close()
        assert 1 <= answered <= 7, answered  # burst of 5 (+ refill while sending)
        off = d.offload()
        assert off["kernel"]["ecm-rate-limited"] >= 30, off
        prog_id = off["program-id"]
        assert "mapreq_answer" in d.sh("tc", "filter", "show", "dev", "lo", "ingress").stdout
        assert d.stop() == 0
        assert d.sh("tc", "filter", "show", "dev", "lo", "ingress").stdout.strip() == ""
        assert "clsact" not in d.sh("tc", "qdisc", "show", "dev", "lo").stdout
        deadline = time.monotonic() + 5
        while True:  # the program is freed once its last reference goes (RCU)
            gone = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True, text=True,
                                  check=False)
            if gone.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert gone.returncode != 0, gone.stdout
    finally:
        gen.close()


def test_killed_daemon_program_goes_quiet(tmp_path: Path) -> None:
    gen = _start(tmp_path, 0, "k")
    d = next(gen)
    try:
        c = Client(d)
        c.ask(request("11.1.1.1", 1, c.port))  # the daemon answers and teaches the kernel
        d.proc.kill()  # no chance to detach
        d.proc.wait()
        reply, _ = c.ask(request("11.1.1.1", 2, c.port))  # the kernel, on its own
        assert int.from_bytes(reply[4:12], "big") == 2
        assert "mapreq_answer" in d.sh("tc", "filter", "show", "dev", "lo", "ingress").stdout
        time.sleep(mapreq_offload.HEARTBEAT_S + 0.5)
        c.sock.settimeout(0.5)
        with pytest.raises(OSError):  # nobody answers (timeout, or port unreachable)
            c.ask(request("11.1.1.1", 3, c.port))
        c.close()
    finally:
        gen.close()


def test_falls_back_without_an_ipv4_control_address(caplog: pytest.LogCaptureFixture) -> None:
    ms = MapServer([], MapServerConfig())
    with caplog.at_level("WARNING", logger="lispnet.mapping.offload"):
        assert mapreq_offload.start_offload(ms, ms, None, (ip_address("::1"),), PORT) is None
    assert "needs an IPv4" in caplog.text and "answered by the daemon" in caplog.text
