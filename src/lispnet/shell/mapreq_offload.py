"""Kernel Map-Request offload (``[node] map-request-offload = "ebpf"``).

A tc clsact ingress program (``dataplane/bpf/mapreq.bpf.c``) on the interface that
carries the node's first IPv4 control address answers common-shape Map-Requests
(ECM or plain, IPv4 outer, one IPv4 ITR-RLOC equal to the source, one IPv4/IPv6 EID
record, maybe in an Instance-ID LCAF) from an LPM trie of Map-Reply templates, by
rewriting the request into the reply and redirecting it back into the interface: no
socket, no context switch, no Python.  Everything else reaches the daemon unchanged.

:class:`MapRequestOffload` sits in front of the mapping engine for the ``ecm`` and
``map-request`` dispatch keys:

* ``receive_fast`` passes each request on to the engine; when the engine's answer is a
  Map-Reply sent from a template, :class:`~lispnet.core.replytmpl.OffloadTable` decides
  whether the kernel may answer that EID prefix from now on and the entry is inserted
  (so the kernel's bytes are the daemon's own);
* ``poll_sends`` (the daemon calls it after every receive batch and every API write)
  drains the Map-Server's change journal and deletes the kernel entries a change may
  have made wrong, and rewrites the program's configuration when the options change;
* once a second (``on_timer``) the program's heartbeat is renewed: if the daemon dies
  without detaching it (SIGKILL), the program stops answering after
  :data:`HEARTBEAT_S` seconds;
* once a second and on every stats read, the program's per-CPU counters
  are added to the engines' counters (``messages-in``, ``requests``,
  ``messages-out``), so ``/metrics`` and ``lispnet show stats`` count kernel answers.

Rate limit: the program keeps a token bucket per source address (rate and burst of
``map-request-rate-limit``) and charges every request it parses as one for us;
requests it hands to the daemon pay again there, so no source gets more than the
configured rate.

The control port is learned from the first request the daemon answers (it may be
ephemeral); until then the program answers nothing.  ``close`` detaches the filter,
removes the clsact qdisc if this module created it, and frees the programs and maps.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import socket
import struct
import subprocess
import time
from typing import TYPE_CHECKING, Any

from ..core.replica import journal_hub
from ..core.replytmpl import KEY_SIZE, KIND_NAMES, VALUE_SIZE, OffloadTable
from ..wire.prefix import EidPrefix

if TYPE_CHECKING:
    from ..core.engine import Endpoint, Engine, Event, Send
    from ..core.map_resolver import MapResolver
    from ..core.map_server import MapServer
    from ..dataplane.libbpf import BpfMap, BpfObject

log = logging.getLogger("lispnet.mapping.offload")

TC_HANDLE = 0x4D52  # "MR"
TC_PRIORITY = 1
COUNTER_INTERVAL_S = 1.0

# counter indexes of mapreq.bpf.c
C_ECM_ANSWERED, C_PLAIN_ANSWERED, C_PROXY, C_NEG_UNREG, C_NEG_NONEID = 0, 1, 2, 3, 4
C_ECM_LIMITED, C_PLAIN_LIMITED, C_PASSED, C_ERRORS, C_MAX = 5, 6, 7, 8, 9
COUNTER_NAMES = (
    "ecm-answered", "plain-answered", "proxy-reply", "negative-unregistered", "negative-non-eid",
    "ecm-rate-limited", "plain-rate-limited", "passed-to-daemon", "rewrite-errors",
)
_CFG = struct.Struct("=4s2sBxQQQ")
HEARTBEAT_S = 3.0
"""The program answers only while the daemon's last heartbeat is younger than this."""


class OffloadUnavailable(RuntimeError):
    """The offload cannot run here (no IPv4 control address, no BPF object, no privileges)."""


def interface_of(address: ipaddress.IPv4Address) -> tuple[str, int]:
    """(name, ifindex) of the interface that carries ``address`` in this namespace."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=False)
    if out.returncode == 0:
        for link in json.loads(out.stdout or "[]"):
            for a in link.get("addr_info", ()):
                if a.get("local") == str(address):
                    return str(link["ifname"]), int(link["ifindex"])
    if address.is_loopback:
        return "lo", socket.if_nametoindex("lo")
    raise OffloadUnavailable(f"no interface carries {address}")


class MapRequestOffload:
    """Front of the mapping engine for Map-Requests, owning the kernel program (see the
    module docstring).  Has the Engine protocol so the daemon drives it."""

    def __init__(
        self,
        engine: Engine,
        ms: MapServer,
        mr: MapResolver | None,
        address: ipaddress.IPv4Address,
        port: int,
    ) -> None:
        from ..dataplane import bpf_build, libbpf

        self.engine = engine
        self.ms = ms
        self.mr = mr
        self.address = address
        self.port = port
        """Configured control port (0 = learn it from the first request)."""
        self.table = OffloadTable(ms)
        self.ifname, self.ifindex = interface_of(address)
        if not libbpf.available():
            raise OffloadUnavailable("libbpf is not available")
        obj_path = bpf_build.MAPREQ_OBJECT
        if bpf_build.is_stale(bpf_build.MAPREQ_SOURCE, obj_path):
            try:
                bpf_build.build(bpf_build.MAPREQ_SOURCE, obj_path)
            except bpf_build.BuildError as e:
                if not obj_path.exists():
                    raise OffloadUnavailable(str(e)) from e
        self._libbpf = libbpf
        self.obj: BpfObject | None = libbpf.BpfObject(str(obj_path))
        self.created_qdisc = False
        self.prog_id: int | None = None
        try:
            ncpu = libbpf.num_possible_cpus()
            self.cfg_map: BpfMap = libbpf.BpfMap(self.obj.map_fd("mreq_cfg"), "mreq_cfg", 4, _CFG.size)
            self.replies: BpfMap = libbpf.BpfMap(self.obj.map_fd("mreq_replies"), "mreq_replies", KEY_SIZE, VALUE_SIZE)
            self.counters: BpfMap = libbpf.BpfMap(
                self.obj.map_fd("mreq_counters"), "mreq_counters", 4, 8, per_cpu=True
            )
            self._ncpu = ncpu
            prog_fd = self.obj.program_fd("mapreq_answer")
            self.created_qdisc = libbpf.tc_hook_create(self.ifindex)
            old = libbpf.tc_query(self.ifindex, handle=TC_HANDLE, priority=TC_PRIORITY)
            if old is not None:
                log.warning("replacing map-request offload program %d on %s (left by a killed daemon, or another "
                            "daemon offloading on this interface: one per interface)", old, self.ifname)
            self.prog_id = libbpf.tc_attach(self.ifindex, prog_fd, handle=TC_HANDLE, priority=TC_PRIORITY)
        except BaseException:
            self.close()
            raise
        self._cfg_written: bytes | None = None
        self._learned_port = 0
        self._seen_counts = [0] * C_MAX
        self.totals = [0] * C_MAX
        self._next_counters: float | None = None
        self.insert_errors = 0
        journal_hub(ms).subscribe(self._on_journal)
        log.info(
            "map-request offload: tc ingress on %s (ifindex %d) for %s, program id %s",
            self.ifname, self.ifindex, address, self.prog_id,
        )

    # --- the engine front ------------------------------------------------------------
    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        self.engine.receive(datagram, src, dst, now)

    def receive_fast(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> tuple[bytes, str, int] | None:
        out: tuple[bytes, str, int] | None = self.engine.receive_fast(datagram, src, dst, now)  # type: ignore[attr-defined]
        if out is not None and out[0][0] >> 4 == 2 and self.obj is not None:
            if not self._learned_port:
                self._learn_port(dst)
            ins = self.table.learn(out[0])
            if ins is not None:
                try:
                    self.replies.update(*ins)
                except OSError as e:  # e.g. the trie is full: forget the entry
                    self.insert_errors += 1
                    self._on_journal([_prefix_of(ins[0])])
                    log.debug("offload insert failed: %s", e)
        return out

    def _learn_port(self, dst: Endpoint) -> None:
        if dst.address != self.address or (self.port and dst.port != self.port):
            return
        self._learned_port = dst.port
        self._write_cfg()

    def _write_cfg(self) -> None:
        if not self._learned_port or self.obj is None:
            return
        rate, burst, plain = self._limits()
        cfg = _CFG.pack(self.address.packed, self._learned_port.to_bytes(2, "big"), plain, rate, burst, 0)
        if cfg != self._cfg_written:
            self._cfg_written = cfg
            self._heartbeat()

    def _heartbeat(self) -> None:
        """Rewrite the configuration with a fresh ``alive_until_ns`` (CLOCK_MONOTONIC, the
        clock of bpf_ktime_get_ns)."""
        if self._cfg_written is None or self.obj is None:
            return
        alive = time.monotonic_ns() + int(HEARTBEAT_S * 1e9)
        self.cfg_map.update(struct.pack("=I", 0), self._cfg_written[:-8] + struct.pack("=Q", alive))

    def _limits(self) -> tuple[int, int, int]:
        """(rate, burst, accept plain requests) of the limiter the requests meet first."""
        c: Any = self.mr.config if self.mr is not None else self.ms.config
        rate = c.map_request_rate
        if rate <= 0:
            return 0, 0, int(c.accept_plain_requests)
        burst = c.map_request_burst if c.map_request_burst is not None else max(1.0, rate)
        return max(1, round(rate)), max(1, math.ceil(burst)), int(c.accept_plain_requests)

    def poll_sends(self, now: float) -> list[Send]:
        if self.obj is not None:
            if self._next_counters is None:
                self._next_counters = now + COUNTER_INTERVAL_S
            journal_hub(self.ms).drain()
            self._on_journal([])  # site / option changes show in the versions
            self._write_cfg()
        return []

    def poll_events(self) -> list[Event]:
        return []

    def next_deadline(self) -> float | None:
        return self._next_counters

    def on_timer(self, now: float) -> None:
        self._heartbeat()
        self.sync_counters()
        self._next_counters = now + COUNTER_INTERVAL_S

    def _on_journal(self, prefixes: list[EidPrefix]) -> None:
        """Delete the kernel entries a change of ``prefixes`` (or of the sites, options or
        prefix set, noticed by version) may have made wrong."""
        if self.obj is None:
            return
        for key in self.table.changed(prefixes):
            try:
                self.replies.delete(key)
            except OSError as e:  # never leave a stale answer behind silently
                log.error("map-request offload: cannot delete a kernel entry (%s); detaching", e)
                self.close()
                return

    # --- counters --------------------------------------------------------------------
    def read_counters(self) -> list[int]:
        """Totals over CPUs of the program's counters."""
        out = []
        for i in range(C_MAX):
            raw = self.counters.lookup(struct.pack("=I", i))
            out.append(sum(struct.unpack(f"={self._ncpu}Q", raw)) if raw else 0)
        return out

    def sync_counters(self) -> None:
        """Add what the program counted since the last call to the engines' counters."""
        if self.obj is None:
            return
        now = self.read_counters()
        d = [a - b for a, b in zip(now, self._seen_counts, strict=True)]
        self._seen_counts = now
        self.totals = [a + b for a, b in zip(self.totals, d, strict=True)]
        if not any(d):
            return
        from ..core.mapsys import msg_name
        from ..wire.enums import MessageType

        ecm, req = msg_name(MessageType.ECM), msg_name(MessageType.MAP_REQUEST)
        front = self.mr.counters if self.mr is not None else self.ms.counters
        front.messages_in[ecm] += d[C_ECM_ANSWERED] + d[C_ECM_LIMITED]
        front.messages_in[req] += d[C_PLAIN_ANSWERED] + d[C_PLAIN_LIMITED]
        if d[C_ECM_LIMITED] + d[C_PLAIN_LIMITED]:
            front.requests["rate-limited"] += d[C_ECM_LIMITED] + d[C_PLAIN_LIMITED]
        answered = d[C_ECM_ANSWERED] + d[C_PLAIN_ANSWERED]
        if self.mr is not None and answered:
            front.requests["handed-to-map-server"] += answered
        c = self.ms.counters
        for idx, kind in ((C_PROXY, 1), (C_NEG_UNREG, 2), (C_NEG_NONEID, 3)):
            if d[idx]:
                c.requests[KIND_NAMES[kind]] += d[idx]
        if answered:
            c.messages_out["map-reply"] += answered

    def stats(self) -> dict[str, Any]:
        self.sync_counters()
        return {
            "interface": self.ifname,
            "program-id": self.prog_id,
            "control": f"{self.address}:{self._learned_port or self.port}",
            "active": self._cfg_written is not None,
            "kernel": dict(zip(COUNTER_NAMES, self.totals, strict=True)),
            "insert-errors": self.insert_errors,
            **self.table.stats(),
        }

    # --- stop ------------------------------------------------------------------------
    def close(self) -> None:
        """Detach the program and free it and its maps (idempotent)."""
        libbpf = self._libbpf
        with contextlib.suppress(Exception):
            self.sync_counters()
        with contextlib.suppress(Exception):
            journal_hub(self.ms).unsubscribe(self._on_journal)
        if self.prog_id is not None:
            with contextlib.suppress(OSError):
                libbpf.tc_detach(self.ifindex, handle=TC_HANDLE, priority=TC_PRIORITY)
            self.prog_id = None
        if self.created_qdisc:
            with contextlib.suppress(OSError):
                libbpf.tc_hook_destroy(self.ifindex)
            self.created_qdisc = False
        if self.obj is not None:
            self.obj.close()
            self.obj = None
        log.info("map-request offload stopped (tc filter removed from %s)", self.ifname)


def _prefix_of(key: bytes) -> EidPrefix:
    from ..core.replytmpl import eid_of_key

    return eid_of_key(key).prefix()


def start_offload(
    engine: Engine, ms: MapServer, mr: MapResolver | None, control: tuple[Any, ...], port: int
) -> MapRequestOffload | None:
    """The offload for the first IPv4 address in ``control``, or None (logged why)."""
    addr = next((a for a in control if isinstance(a, ipaddress.IPv4Address) and not a.is_unspecified), None)
    if addr is None:
        log.warning("map-request-offload = ebpf needs an IPv4 [node] control-addresses entry; "
                    "Map-Requests are answered by the daemon")
        return None
    try:
        return MapRequestOffload(engine, ms, mr, addr, port)
    except (OSError, OffloadUnavailable) as e:
        log.warning("map-request offload unavailable (%s); Map-Requests are answered by the daemon", e)
        return None


__all__ = ["COUNTER_NAMES", "MapRequestOffload", "OffloadUnavailable", "interface_of", "start_offload"]
