"""The node daemon: one asyncio loop hosting every configured role.

Life of a node (``lispnet run NODE.toml``)::

    load + validate config  ->  build roles (shell/roles.py)  ->  restore state file
      ->  bind UDP control sockets  ->  start the REST API (uvicorn on this loop)
      ->  serve until SIGTERM/SIGINT  ->  stop API, close sockets, stop roles

The loop owns all state; nothing here uses threads or locks (STYLE.md section 3, the
gobgp ``mgmtOperation`` idea: API handlers run on the same loop and call service
methods directly).

Datagram path (the hot path, kept short): each control socket is read in a tight
``recvfrom`` loop on readiness (``udp.UdpEndpoint``, up to ``RECV_BATCH`` datagrams);
per datagram ``classify`` peeks at the type nibble and ECM flags, the dispatch table
gives the engine, the engine's ``receive`` gets the raw bytes and ``now = loop.time()``;
once per batch every engine's sends and events are drained and the single timer is
re-armed at the earliest ``next_deadline()``.  An exception escaping an
engine is a bug in lispnet: it is logged with its traceback (rate-limited), counted in
``bugs`` and the datagram is dropped; the daemon keeps serving.  Tests treat a non-zero
bug counter as a failure.

Sends with ``src`` None go out of the control socket of the destination's family,
``src.port == 0`` out of an ephemeral-port socket (its replies come back through the
same dispatch), ``src.address`` out of the control socket bound there.

SIGHUP re-reads the file; a bad file is logged and ignored.  Node-level changes
(addresses, ports, roles, API) need a restart and are only logged; each role's
``reload`` applies the rest (the mapping role diffs the sites).

Scaling: with ``[node] workers`` = N > 1 and a map-server role, N - 1 forked worker
processes bind the control port too (SO_REUSEPORT) and answer common-shape Map-Requests
from a replica this process keeps up to date; everything else they receive comes back
here (``shell/workers.py``).

Garbage collection: the registration table is millions of long-lived, acyclic objects.
CPython's full collections walk all of them (a 1 M-EID table means ~10 M objects), so
the daemon freezes everything alive after start and then every
``GC_FREEZE_INTERVAL_S`` (``gc.freeze``: frozen objects are skipped by the collector but
still freed by reference counting), and raises the young-generation threshold.  A
reference cycle created and dropped between two freezes would leak; nothing on the
datagram path creates one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import signal
import time
import traceback
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .. import __version__
from ..config.load import ConfigError, load_config
from ..config.model import NodeConfig
from ..core.engine import Endpoint, Engine, Event, Send
from . import udp
from .logutil import RateLimitedLog, setup_logging
from .roles import RoleContext, RoleRuntime, build_roles, load_role_modules, stop_runtime
from .udp import UdpEndpoint, classify, ipv6_available, wildcard

log = logging.getLogger("lispnet.daemon")

STATE_VERSION = 1

GC_FREEZE_INTERVAL_S = 5.0
GC_THRESHOLDS = (50_000, 20, 1_000)
"""gen0 allocations, gen1 and gen2 collection ratios (CPython defaults: 700, 10, 10)."""

FastReceive = Callable[[bytes, Endpoint, Endpoint, float], "tuple[bytes, str, int] | None"]
"""An engine's optional ``receive_fast``: ``receive``, but one answer may come back as
(payload, destination address text, port) to send at once from the control socket of
that family; None = handled the ``receive`` way (sends queued)."""

FAST_KINDS = (udp.ECM, udp.MAP_REQUEST, udp.ECM_TO_MS, udp.MAP_REGISTER)
"""Dispatch keys that take the Map-Request lane when their engine has ``receive_fast``
(Map-Registers too: their Map-Notify is sent at once the same way)."""

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Daemon:
    """One node.  ``await start()``, then ``await wait_stopped()``; or ``await run()``."""

    def __init__(
        self,
        config: NodeConfig,
        config_path: str | Path | None = None,
        *,
        rng: random.Random | None = None,
        role_modules: Sequence[str] = (),
        install_signal_handlers: bool = True,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.rng = rng if rng is not None else random.Random()
        self.role_modules = tuple(role_modules)
        self.install_signal_handlers = install_signal_handlers
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtimes: list[RoleRuntime] = []
        self.services: dict[str, Any] = {}
        self.engines: list[Engine] = []
        self.dispatch: dict[str, Engine] = {}
        self._fast: dict[str, FastReceive] = {}
        """Dispatch keys whose engine has ``receive_fast`` (the Map-Request lane)."""
        self._out: dict[int, UdpEndpoint] = {}
        """IP version -> the control socket sends without a source go out of."""
        self.control: list[UdpEndpoint] = []
        self.ephemeral: dict[int, UdpEndpoint] = {}
        self.extra_sockets: list[UdpEndpoint] = []
        self.api: Any = None
        self.metrics = CollectorRegistry(auto_describe=True)
        self.ratelog = RateLimitedLog(log)
        self.ctx: RoleContext | None = None
        self.started_wall = time.time()
        self.started_mono = time.monotonic()

        # counters (plain ints on the hot path; exported by _DaemonCollector)
        self.rx: Counter[str] = Counter()
        self.tx: Counter[str] = Counter()
        self.unhandled: Counter[str] = Counter()
        self.send_failures = 0
        self.bugs = 0
        self.reloads = 0
        self.reload_failures = 0
        self.state_writes = 0
        self.latency = FastHistogram(LATENCY_BUCKETS)
        """Engine time per received datagram, by dispatch key (exported by _DaemonCollector)."""
        self.metrics.register(_DaemonCollector(self))

        self._loop_time: Any = time.monotonic  # loop.time once started
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._state_pending = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.workers: Any = None
        """``shell.workers.WorkerPool`` when ``[node] workers`` > 1."""
        self._gc_timer: asyncio.TimerHandle | None = None

    # --- lifecycle ---------------------------------------------------------------------
    async def run(self) -> int:
        """Start, serve until stopped, clean up.  Returns the process exit status."""
        await self.start()
        await self.wait_stopped()
        return 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        # the default loop's clock is time.monotonic: call it directly (one call less per datagram)
        default_clock = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        self._loop_time = time.monotonic if default_clock else loop.time
        cfg = self.config
        log.info("lispnet %s node %s starting, roles: %s", __version__, cfg.node.name, ", ".join(cfg.node.roles))
        load_role_modules(self.role_modules)
        self.ctx = RoleContext(
            config=cfg,
            loop=loop,
            send=self.send,
            open_udp=self.open_udp,
            clock=loop.time,
            wall=time.time,
            rng=self.rng,
            logger=logging.getLogger("lispnet.role"),
            ratelog=self.ratelog,
            metrics=self.metrics,
            services=self.services,
            kick=self.kick,
            state_changed=self.state_changed,
        )
        try:
            self.runtimes = await build_roles(self.ctx)
            self._wire_runtimes()
            self._load_state()
            await self._bind_control()
            if cfg.node.workers > 1:
                self._start_workers(cfg.node.workers)
            if cfg.node.api:
                from ..api.app import ApiServer, create_app

                self.api = ApiServer(create_app(self), cfg.node.api)
                await self.api.start()
                log.info("REST API on http://%s", self.api.address)
        except BaseException:
            await self._cleanup()
            raise
        if self.install_signal_handlers:
            self._install_signals()
        self.kick()
        gc.set_threshold(*GC_THRESHOLDS)
        self._gc_freeze()
        log.info("node %s ready", cfg.node.name)

    def _gc_freeze(self) -> None:
        """Move every object alive now out of the collector's sight (see the module doc)."""
        gc.freeze()
        if self.loop is not None and not self._stopping:
            self._gc_timer = self.loop.call_later(GC_FREEZE_INTERVAL_S, self._gc_freeze)

    def _start_workers(self, n: int) -> None:
        from .workers import WorkerPool, replicated_kinds

        ms = self.services.get("map-server")
        engine = self.dispatch.get(udp.ECM)
        kinds = replicated_kinds(self.dispatch, engine)
        if ms is None or not kinds:
            log.warning("workers = %d: only a map-server role can use workers; serving in-process", n)
            return
        fds = [ep.sock.fileno() for ep in (*self.control, *self.ephemeral.values(), *self.extra_sockets)
               if ep.sock is not None]
        pool = WorkerPool(ms, kinds, self._on_datagram, self._drain)
        pool.start(n - 1, [ep.local for ep in self.control], fds, self.loop)
        self.workers = pool

    def _wire_runtimes(self) -> None:
        engines: list[Engine] = []
        for rt in self.runtimes:
            for kind, eng in rt.handlers.items():
                if kind in self.dispatch and self.dispatch[kind] is not eng:
                    log.warning("role %s also handles %s; keeping the first role's engine", rt.name, kind)
                    continue
                self.dispatch[kind] = eng
            for eng in (*rt.engines, *rt.handlers.values()):
                if not any(eng is e for e in engines):
                    engines.append(eng)
        self.engines = engines
        for kind, fallback in udp.ECM_FALLBACK.items():
            if kind not in self.dispatch and fallback in self.dispatch:
                self.dispatch[kind] = self.dispatch[fallback]
        self._fast = {}
        for kind in FAST_KINDS:
            fast = getattr(self.dispatch.get(kind), "receive_fast", None)
            if fast is not None:
                self._fast[kind] = fast
        log.debug("dispatch: %s", {k: type(v).__name__ for k, v in self.dispatch.items()})

    async def _bind_control(self) -> None:
        assert self.loop is not None
        node = self.config.node
        addrs = list(node.control_addresses)
        if not addrs:
            addrs = [wildcard(4)]
            if ipv6_available():
                addrs.append(wildcard(6))
        reuse = node.workers > 1
        port = node.control_port
        for a in addrs:
            ep = await UdpEndpoint.open(
                self.loop, Endpoint(a, port), self._on_datagram, reuse_port=reuse, on_batch_end=self._drain
            )
            self.control.append(ep)
            log.info("control plane listening on udp %s", ep.local)
            if port == 0:
                # one ephemeral port for all addresses, so peers see one control port
                port = ep.local.port
        for version in sorted({ep.family for ep in self.control}):
            ep = await UdpEndpoint.open(
                self.loop, Endpoint(wildcard(version), 0), self._on_datagram, on_batch_end=self._drain
            )
            self.ephemeral[version] = ep
        for ep in self.control:
            self._out.setdefault(ep.family, ep)

    @property
    def control_port(self) -> int:
        return self.control[0].local.port if self.control else self.config.node.control_port

    async def open_udp(self, local: Endpoint, callback: udp.DatagramCallback) -> UdpEndpoint:
        assert self.loop is not None
        ep = await UdpEndpoint.open(self.loop, local, callback)
        self.extra_sockets.append(ep)
        return ep

    def request_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("stopping")
        self._spawn(self._stop())

    async def stop(self) -> None:
        self.request_stop()
        await self.wait_stopped()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _stop(self) -> None:
        try:
            await self._cleanup()
        finally:
            log.info("node %s stopped", self.config.node.name)
            self._stopped.set()

    async def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gc_timer is not None:
            self._gc_timer.cancel()
            self._gc_timer = None
        if self.workers is not None:
            self.workers.stop()
            self.workers = None
        if self.api is not None:
            with contextlib.suppress(Exception):
                await self.api.stop()
            self.api = None
        if self._state_pending:
            self._write_state()
        for ep in (*self.control, *self.ephemeral.values(), *self.extra_sockets):
            ep.close()
        self.control.clear()
        self._out.clear()
        self.ephemeral.clear()
        self.extra_sockets.clear()
        for rt in reversed(self.runtimes):
            try:
                await stop_runtime(rt)
            except Exception:
                self.bugs += 1
                log.exception("role %s failed to stop cleanly", rt.name)
        if self.loop is not None and self.install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    self.loop.remove_signal_handler(sig)

    def _install_signals(self) -> None:
        assert self.loop is not None
        self.loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        self.loop.add_signal_handler(signal.SIGINT, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- datagrams -------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        """One received control datagram.  Sends, events and the timer are handled once
        per receive batch (``_drain`` is the sockets' ``on_batch_end``)."""
        kind = classify(data)
        self.rx[kind] += 1
        fast = self._fast.get(kind)
        if fast is not None:
            # the Map-Request lane: a common-shape request's answer comes back as
            # (payload, address text, port) and goes out at once (no Send / Endpoint)
            t0 = perf_counter()
            try:
                out = fast(data, src, dst, self._loop_time())
            except Exception:
                out = None
                self._bug(f"{type(self.dispatch[kind]).__name__}.receive_fast({kind} from {src})", data)
            self.latency.observe(kind, perf_counter() - t0)
            if out is not None:
                reply, host, port = out
                ep = self._out.get(6 if ":" in host else 4)
                if ep is not None and ep.send_raw(reply, (host, port)):
                    self.tx[udp.MAP_REPLY if reply[0] >> 4 == 2 else classify(reply)] += 1
                else:
                    self._send_failed(host, port)
            return
        engine = self.dispatch.get(kind)
        if engine is None:
            self.unhandled[kind] += 1
            self.ratelog.debug(("unhandled", kind), "no role handles %s (from %s); dropped", kind, src)
            return
        t0 = perf_counter()
        try:
            engine.receive(data, src, dst, self._loop_time())
        except Exception:
            self._bug(f"{type(engine).__name__}.receive({kind} from {src})", data)
        self.latency.observe(kind, perf_counter() - t0)

    def _bug(self, where: str, data: bytes | None = None) -> None:
        self.bugs += 1
        extra = f" datagram={data[:64].hex()}" if data is not None else ""
        self.ratelog.error(("bug", where.split("(")[0]), "BUG in %s:%s\n%s", where, extra, traceback.format_exc())

    def send(self, s: Send) -> None:
        """Send one datagram (see the module docstring for how the socket is chosen)."""
        ep = self._socket_for(s)
        if ep is None or not ep.sendto(s.data, s.dst):
            self.send_failures += 1
            self.ratelog.warning(("send", s.dst.address.version), "cannot send to %s (no usable socket)", s.dst)
            return
        self.tx[classify(s.data)] += 1

    def _send_failed(self, host: str, port: int) -> None:
        self.send_failures += 1
        version = 6 if ":" in host else 4
        self.ratelog.warning(("send", version), "cannot send to %s port %d (no usable socket)", host, port)

    def _socket_for(self, s: Send) -> UdpEndpoint | None:
        version = s.dst.address.version
        if s.src is not None:
            if s.src.port == 0:
                return self.ephemeral.get(version)
            for ep in self.control:
                if ep.local.address == s.src.address and ep.family == version:
                    return ep
        for ep in self.control:
            if ep.family == version:
                return ep
        return None

    def kick(self) -> None:
        """Drain every engine's sends and events and re-arm the timer (after API writes)."""
        self._drain()

    def _drain(self) -> None:
        assert self.loop is not None
        now = self.loop.time()
        for eng in self.engines:
            try:
                sends = eng.poll_sends(now)
                events = eng.poll_events()
            except Exception:
                self._bug(f"{type(eng).__name__}.poll")
                continue
            for s in sends:
                self.send(s)
            if events:
                self._dispatch_events(events)
        if self.workers is not None:
            try:
                self.workers.push()
            except Exception:
                self._bug("workers.push")
        self._arm_timer()

    def _dispatch_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            for rt in self.runtimes:
                if rt.on_event is None:
                    continue
                try:
                    rt.on_event(ev)
                except Exception:
                    self._bug(f"{rt.name}.on_event({type(ev).__name__})")

    def _arm_timer(self) -> None:
        assert self.loop is not None
        deadline: float | None = None
        for eng in self.engines:
            try:
                d = eng.next_deadline()
            except Exception:
                self._bug(f"{type(eng).__name__}.next_deadline")
                continue
            if d is not None and (deadline is None or d < deadline):
                deadline = d
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._stopping:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self.loop is not None
        # asyncio may fire up to one clock resolution early: never pass a `now` before
        # the deadline we armed, or the engine would find nothing due and we would spin.
        now = max(self.loop.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        for eng in self.engines:
            try:
                d = eng.next_deadline()
                if d is not None and d <= now:
                    eng.on_timer(now)
            except Exception:
                self._bug(f"{type(eng).__name__}.on_timer")
        self._drain()

    # --- state file -------------------------------------------------------------------------
    def state_changed(self) -> None:
        """Schedule a state-file write (coalesced: one write per loop iteration)."""
        if self.config.node.state_file is None or self._state_pending:
            return
        self._state_pending = True
        assert self.loop is not None
        self.loop.call_soon(self._write_state)

    def _write_state(self) -> None:
        self._state_pending = False
        path_s = self.config.node.state_file
        if path_s is None:
            return
        roles: dict[str, Any] = {}
        for rt in self.runtimes:
            if rt.snapshot is not None:
                try:
                    roles[rt.name] = rt.snapshot()
                except Exception:
                    self._bug(f"{rt.name}.snapshot")
        doc = {"version": STATE_VERSION, "node": self.config.node.name, "written": time.time(), "roles": roles}
        path = Path(path_s)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            self.state_writes += 1
        except OSError as e:
            log.error("cannot write state file %s: %s", path, e)

    def _load_state(self) -> None:
        path_s = self.config.node.state_file
        if path_s is None:
            return
        path = Path(path_s)
        if not path.exists():
            log.info("state file %s does not exist yet", path)
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state file version {doc.get('version') if isinstance(doc, dict) else '?'}")
            roles = doc.get("roles", {})
            for rt in self.runtimes:
                if rt.restore is not None and rt.name in roles:
                    rt.restore(roles[rt.name])
            log.info("state restored from %s", path)
        except Exception as e:
            bad = path.with_name(path.name + ".bad")
            log.error("state file %s unusable (%s); moved to %s, starting from the config only", path, e, bad)
            with contextlib.suppress(OSError):
                os.replace(path, bad)

    # --- reload -------------------------------------------------------------------------
    async def reload(self) -> list[str]:
        """Re-read the config file and apply what can be applied.  Returns notes."""
        if self.config_path is None:
            log.warning("SIGHUP: no config file to reload")
            return ["no config file"]
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self.reload_failures += 1
            log.error("reload refused, keeping the running configuration:\n%s", e.render())
            return [f"invalid: {p}" for p in e.problems]
        notes: list[str] = []
        old = self.config
        for key in ("name", "roles", "api", "control_addresses", "control_port", "state_file", "dataplane",
                    "rlocs", "rloc_interfaces", "data_port", "workers"):
            if getattr(old.node, key) != getattr(new.node, key):
                notes.append(f"node.{key.replace('_', '-')} changed: needs a restart")
        if old.node.log_level != new.node.log_level:
            logging.getLogger().setLevel(new.node.log_level.upper())
            notes.append(f"log-level now {new.node.log_level}")
        self.config = new
        if self.ctx is not None:
            self.ctx.config = new
        for rt in self.runtimes:
            if rt.reload is None:
                continue
            try:
                notes.extend(rt.reload(new))
            except Exception:
                self._bug(f"{rt.name}.reload")
        self.reloads += 1
        self.kick()
        for n in notes:
            log.info("reload: %s", n)
        log.info("configuration reloaded from %s", self.config_path)
        return notes

    # --- views ---------------------------------------------------------------------------
    def node_info(self) -> dict[str, Any]:
        return {
            "name": self.config.node.name,
            "version": __version__,
            "roles": list(self.config.node.roles),
            "control": [str(ep.local) for ep in self.control],
            "api": self.api.address if self.api is not None else None,
            "started": self.started_wall,
            "uptime": time.monotonic() - self.started_mono,
            "pid": os.getpid(),
        }

    def daemon_stats(self) -> dict[str, Any]:
        return {
            "received": dict(self.rx),
            "sent": dict(self.tx),
            "unhandled": dict(self.unhandled),
            "send-failures": self.send_failures,
            "bugs": self.bugs,
            "reloads": self.reloads,
            "reload-failures": self.reload_failures,
            "state-writes": self.state_writes,
            "log-suppressed": self.ratelog.suppressed_total,
            **({"workers": self.workers.stats()} if self.workers is not None else {}),
        }

    def stats(self) -> dict[str, Any]:
        roles: dict[str, Any] = {}
        for rt in self.runtimes:
            if rt.stats is not None:
                try:
                    roles[rt.name] = dict(rt.stats())
                except Exception:
                    self._bug(f"{rt.name}.stats")
        return {"node": self.config.node.name, "daemon": self.daemon_stats(), "roles": roles}


class FastHistogram:
    """Per-label latency buckets as plain lists (a prometheus ``Histogram`` child costs a
    lock and a few calls per observation, too much per datagram)."""

    __slots__ = ("bounds", "_data")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._data: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, label: str, value: float) -> None:
        d = self._data.get(label)
        if d is None:
            d = self._data[label] = ([0] * (len(self.bounds) + 1), [0.0])
        d[0][bisect_left(self.bounds, value)] += 1
        d[1][0] += value

    def snapshot(self) -> dict[str, tuple[list[tuple[str, float]], float]]:
        """label -> (cumulative (le, count) buckets ending with +Inf, sum)."""
        out: dict[str, tuple[list[tuple[str, float]], float]] = {}
        for label, (counts, total) in self._data.items():
            acc = 0
            buckets: list[tuple[str, float]] = []
            for le, c in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
                acc += c
                buckets.append((le, float(acc)))
            out[label] = (buckets, total[0])
        return out


class _DaemonCollector(Collector):
    """Exports the daemon's plain counters at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def collect(self) -> Iterable[Any]:
        d = self.d
        rx = CounterMetricFamily("lispnet_control_received", "Control datagrams received, by dispatch key", labels=["kind"])
        for k, v in sorted(d.rx.items()):
            rx.add_metric([k], v)
        yield rx
        tx = CounterMetricFamily("lispnet_control_sent", "Control datagrams sent, by dispatch key", labels=["kind"])
        for k, v in sorted(d.tx.items()):
            tx.add_metric([k], v)
        yield tx
        un = CounterMetricFamily("lispnet_control_unhandled", "Datagrams no role handles, by dispatch key", labels=["kind"])
        for k, v in sorted(d.unhandled.items()):
            un.add_metric([k], v)
        yield un
        h = HistogramMetricFamily(
            "lispnet_control_processing_seconds",
            "Time to process one received control datagram (decode and engine), by dispatch key",
            labels=["kind"],
        )
        for kind, (buckets, total) in sorted(d.latency.snapshot().items()):
            h.add_metric([kind], buckets, total)
        yield h
        yield CounterMetricFamily("lispnet_send_failures", "Datagrams that could not be sent", value=d.send_failures)
        yield CounterMetricFamily("lispnet_bugs", "Unexpected exceptions caught by the daemon (must stay 0)", value=d.bugs)
        yield CounterMetricFamily("lispnet_reloads", "Successful configuration reloads", value=d.reloads)
        yield GaugeMetricFamily("lispnet_uptime_seconds", "Seconds since the daemon started",
                                value=time.monotonic() - d.started_mono)


# --- process entry ---------------------------------------------------------------------


def run_node(config_path: str | Path, log_level: str | None = None) -> int:
    """``lispnet run``: validate, then serve.  Exit status 2 on a bad config, 1 on a
    start failure (e.g. an address already in use), 0 on a clean stop."""
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(e.render(), flush=True)
        return 2
    setup_logging(log_level or cfg.node.log_level)
    daemon = Daemon(cfg, config_path)

    async def main() -> int:
        try:
            await daemon.start()
        except OSError as e:
            log.error("cannot start: %s", e)
            return 1
        except Exception as e:  # role build failures etc.
            log.error("cannot start: %s", e)
            return 1
        await daemon.wait_stopped()
        if daemon.bugs:
            log.error("%d bug(s) were caught while running; see the tracebacks above", daemon.bugs)
        return 0

    return asyncio.run(main())


__all__ = ["Daemon", "run_node"]
