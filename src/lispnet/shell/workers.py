"""SO_REUSEPORT Map-Request workers (``[node] workers = N``, N > 1).

Design
------
The main process keeps everything it has without workers: the authoritative
registration table, Map-Register processing, timers, the REST API.  At start it forks
N - 1 workers (the main process answers its share too, so N processes serve in all).
Each worker binds every control address and port again with SO_REUSEPORT, so the
kernel spreads incoming datagrams over the main process and the workers by flow hash,
and runs a plain ``poll`` loop (no asyncio) around a :class:`~lispnet.core.replica.
RequestReplica`:

* a common-shape Map-Request (plain or ECM, IPv4/IPv6 EID) is answered from the
  replica: proxy Map-Reply template, ECM forwarded to an ETR, or negative reply;
* every other datagram (Map-Register, Map-Notify-Ack, odd-shaped requests, other roles'
  messages) goes with its source and destination to the main process over the
  worker's ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair, where it enters the normal
  dispatch (so a Map-Register arriving at a worker gets its Map-Notify from the main
  process, out of the control socket on the same address and port).

The main process pushes replica updates over the same pair after each receive batch:
the prefixes its ``RegistrationTable.journal`` collected (install, refresh with new
content, withdraw, expiry, site change; drained through ``core.replica.JournalHub``,
which the kernel Map-Request offload shares) and the sites and options when they change.
Messages are pickles behind a one-byte tag; the pair is local to the two processes.

Workers die with the daemon: ``PR_SET_PDEATHSIG`` (SIGKILL) covers a killed main
process, EOF on the pair covers every other exit, and ``stop`` closes the pairs, sends
SIGTERM and reaps them.  Each worker reports its counters once a second; the main
process shows them under ``workers`` in the daemon stats.

Wire format of the pair (one SEQPACKET message each):
``U`` + pickle(list of replica updates) / ``S`` + pickle((sites, MapServerConfig))
main -> worker; ``F`` + addresses + datagram / ``C`` + pickle(counters) worker -> main.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import random
import select
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..core.engine import Endpoint
from ..core.map_server import MapServer
from ..core.replica import RequestReplica, journal_hub, journal_updates
from ..wire.prefix import EidPrefix
from .udp import ECM, ECM_TO_MS, MAP_REQUEST, classify, endpoint_of, make_udp_socket

log = logging.getLogger("lispnet.workers")

PAIR_BUF = 4 << 20
UPDATE_CHUNK = 400
"""Replica updates per message (a SEQPACKET message must fit the socket buffer)."""
RECV_BATCH = 256
REPORT_INTERVAL_S = 1.0
PR_SET_PDEATHSIG = 1

_ADDR = struct.Struct("!B16sH")


def _pack_endpoint(ep: Endpoint) -> bytes:
    return _ADDR.pack(ep.address.version, ep.address.packed, ep.port)


def _unpack_endpoint(b: bytes, off: int) -> Endpoint:
    version, packed, port = _ADDR.unpack_from(b, off)
    addr = IPv4Address(packed[:4]) if version == 4 else IPv6Address(packed)
    return Endpoint(addr, port)


def _set_pdeathsig() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class WorkerPool:
    """The main process's side: fork, push updates, receive forwarded datagrams, stop."""

    def __init__(
        self,
        ms: MapServer,
        replicated_kinds: frozenset[str],
        on_datagram: Callable[[bytes, Endpoint, Endpoint], None],
        on_batch_end: Callable[[], None],
    ) -> None:
        self.ms = ms
        self.kinds = replicated_kinds
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.pids: list[int] = []
        self.pairs: list[socket.socket] = []
        self.backlog: list[deque[bytes]] = []
        self.reports: dict[int, dict[str, Any]] = {}
        self.forwarded = 0
        self.push_dropped = 0
        self.loop: Any = None
        self._sites_seen: tuple[int, Any] = (-1, None)

    def start(self, n: int, locals_: Sequence[Endpoint], close_in_child: Sequence[int], loop: Any) -> None:
        """Fork ``n`` workers serving ``locals_`` (the bound control addresses)."""
        self.loop = loop
        hub = journal_hub(self.ms)
        hub.drain()  # the workers start from the table as it is now
        hub.subscribe(self._push_updates)
        self._sites_seen = (self.ms._conf_version, self.ms.config)
        parent = os.getpid()
        for i in range(n):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            for s in (a, b):
                for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.SOL_SOCKET, opt, PAIR_BUF)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child (tested through the daemon)
                status = 0
                try:
                    a.close()
                    for fd in (*close_in_child, *(p.fileno() for p in self.pairs)):
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    _worker_main(i, parent, b, self.ms, self.kinds, locals_)
                except BaseException:
                    status = 1
                    with contextlib.suppress(Exception):
                        log.exception("worker %d failed", i)
                finally:
                    os._exit(status)
            b.close()
            a.setblocking(False)
            self.pids.append(pid)
            self.pairs.append(a)
            self.backlog.append(deque())
            loop.add_reader(a.fileno(), self._readable, i)
        log.info("%d Map-Request worker(s) started: pids %s", n, self.pids)

    # --- main -> workers -------------------------------------------------------------
    def push(self) -> None:
        """Send what changed since the last push (called after every receive batch)."""
        ms = self.ms
        if (ms._conf_version, ms.config) != self._sites_seen:
            self._sites_seen = (ms._conf_version, ms.config)
            self._broadcast(b"S" + pickle.dumps((list(ms.sites.values()), ms.config), pickle.HIGHEST_PROTOCOL))
        journal_hub(ms).drain()

    def _push_updates(self, prefixes: list[EidPrefix]) -> None:
        """Replica updates for the prefixes the journal collected (a hub subscriber)."""
        if not self.pairs:
            return
        updates = journal_updates(self.ms, prefixes)
        for k in range(0, len(updates), UPDATE_CHUNK):
            self._broadcast(b"U" + pickle.dumps(updates[k : k + UPDATE_CHUNK], pickle.HIGHEST_PROTOCOL))

    def _broadcast(self, msg: bytes) -> None:
        for i, s in enumerate(self.pairs):
            if s.fileno() < 0:
                continue
            q = self.backlog[i]
            if q:
                q.append(msg)
                continue
            try:
                s.send(msg)
            except BlockingIOError:
                q.append(msg)
                self.loop.add_writer(s.fileno(), self._writable, i)
            except OSError:
                self.push_dropped += 1

    def _writable(self, i: int) -> None:
        s, q = self.pairs[i], self.backlog[i]
        while q:
            try:
                s.send(q[0])
            except BlockingIOError:
                return
            except OSError:
                self.push_dropped += len(q)
                q.clear()
                break
            q.popleft()
        self.loop.remove_writer(s.fileno())

    # --- workers -> main -------------------------------------------------------------
    def _readable(self, i: int) -> None:
        s = self.pairs[i]
        n = 0
        try:
            while n < RECV_BATCH:
                try:
                    msg = s.recv(70000)
                except (BlockingIOError, InterruptedError):
                    break
                if not msg:
                    log.error("worker %d (pid %d) is gone", i, self.pids[i])
                    self.loop.remove_reader(s.fileno())
                    if self.backlog[i]:
                        self.loop.remove_writer(s.fileno())
                    s.close()
                    break
                tag = msg[:1]
                if tag == b"F":
                    n += 1
                    self.forwarded += 1
                    self.on_datagram(msg[1 + 2 * _ADDR.size :], _unpack_endpoint(msg, 1),
                                     _unpack_endpoint(msg, 1 + _ADDR.size))
                elif tag == b"C":
                    self.reports[i] = pickle.loads(msg[1:])
        finally:
            if n:
                self.on_batch_end()

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.pids),
            "pids": list(self.pids),
            "forwarded-to-main": self.forwarded,
            "push-dropped": self.push_dropped,
            "per-worker": [self.reports.get(i, {}) for i in range(len(self.pids))],
        }

    def stop(self, timeout_s: float = 5.0) -> None:
        for i, s in enumerate(self.pairs):
            if s.fileno() >= 0:
                with contextlib.suppress(Exception):
                    self.loop.remove_reader(s.fileno())
                    if self.backlog[i]:
                        self.loop.remove_writer(s.fileno())
                s.close()
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for pid in self.pids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        self.pids.clear()
        self.pairs.clear()
        journal_hub(self.ms).unsubscribe(self._push_updates)


# --- the worker process ---------------------------------------------------------------


def _worker_main(  # pragma: no cover - runs in the forked child
    idx: int, parent: int, pair: socket.socket, ms: MapServer, kinds: frozenset[str], locals_: Sequence[Endpoint]
) -> None:
    _set_pdeathsig()
    if os.getppid() != parent:
        return
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    replica = RequestReplica.from_map_server(ms, random.Random())
    del ms
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    socks = [make_udp_socket(ep, reuse_port=True) for ep in locals_]
    by_fd = {s.fileno(): (s, ep) for s, ep in zip(socks, locals_, strict=True)}
    pair.setblocking(True)
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    poller.register(pair, select.POLLIN)
    pair_fd = pair.fileno()
    peers: dict[Any, Endpoint] = {}
    mono = time.monotonic
    answered = forwarded = received = 0
    next_report = mono() + REPORT_INTERVAL_S
    sends = replica.sends
    pack_dst = {ep: _pack_endpoint(ep) for ep in locals_}
    while True:
        for fd, _ in poller.poll(1000):
            if fd == pair_fd:
                msg = pair.recv(70000)
                if not msg:
                    return  # the main process is gone
                tag = msg[:1]
                if tag == b"U":
                    replica.apply(pickle.loads(msg[1:]))
                elif tag == b"S":
                    sites, cfg = pickle.loads(msg[1:])
                    replica.set_sites(sites, cfg)
                continue
            sock, local = by_fd[fd]
            recv = sock.recvfrom
            sendto = sock.sendto
            now = mono()
            for _ in range(RECV_BATCH):
                try:
                    data, addr = recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                received += 1
                src = peers.get(addr)
                if src is None:
                    if len(peers) >= 8192:
                        peers.clear()
                    src = peers[addr] = endpoint_of(addr)
                if classify(data) in kinds and replica.receive(data, src, local, now):
                    answered += 1
                    for d, host, port in sends:
                        with contextlib.suppress(OSError):
                            sendto(d, (host, port))
                    sends.clear()
                    continue
                forwarded += 1
                with contextlib.suppress(OSError):
                    pair.send(b"F" + _pack_endpoint(src) + pack_dst[local] + data, socket.MSG_DONTWAIT)
        now = mono()
        if now >= next_report:
            next_report = now + REPORT_INTERVAL_S
            report = {
                "pid": os.getpid(),
                "received": received,
                "answered": answered,
                "forwarded": forwarded,
                "replica-prefixes": len(replica),
                "requests": dict(replica.counters.requests),
            }
            with contextlib.suppress(OSError):
                pair.send(b"C" + pickle.dumps(report), socket.MSG_DONTWAIT)


def replicated_kinds(dispatch: dict[str, Any], engine: Any) -> frozenset[str]:
    """The dispatch keys a worker may answer: the request kinds the mapping engine owns."""
    return frozenset(k for k in (ECM, MAP_REQUEST, ECM_TO_MS) if dispatch.get(k) is engine)


__all__ = ["WorkerPool", "replicated_kinds"]
