"""The TUN forwarding backend: a user-space LISP data plane.

Layout, per node:

* one TUN device per instance-id (``lisp<iid>``).  Traffic toward remote EIDs is routed
  into it: for an instance bound to a LAN interface, policy rules send everything that
  enters on that LAN (and everything leaving the TUN) to a routing table of its own
  (``TABLE_BASE + iid``) whose default route points into the TUN; for an instance with
  no LAN (a PITR), ``add_routes`` steers chosen prefixes (the EID space) into the TUN
  from the main table;
* two UDP sockets on port 4341 (IPv4, IPv6) receive encapsulated packets; sending uses
  one socket per outer source port (the flow hash, see ``encap.source_port``), opened
  on first use and bound to the local RLOC of the family;
* raw IP sockets forward natively (negative natively-forward entries): the kernel routes
  them with the main table.

The fast path is one thread polling (epoll) every TUN fd and both 4341 sockets, so the
two directions never fight over the GIL, and batching amortises the per-syscall cost:

* ITR: up to ``BUDGET`` packets are read from a TUN per wake-up (until it would block),
  each into its own slot of one arena (no copies).  A 5-tuple cache maps a packet
  straight to its flow: outer socket (source port = flow hash), RLOC, LISP header,
  per-RLOC counters and a pending batch.  The LISP header is copied into the 8 bytes in
  front of the packet in its slot, and same-size packets of a flow leave in one
  ``sendmsg`` with ``UDP_SEGMENT`` (``udp_gso``): up to 64 ordinary LISP packets per
  syscall, flushed at the end of every drain;
* ETR: the 4341 sockets use ``UDP_GRO``, so one ``recvmsg`` returns such a batch.  When
  it is one instance and one inner flow (checked per header byte column, not per
  packet: ``tun_gso.coalesce_batch``) it is written to the instance's TUN as one
  super-packet with a virtio-net GSO header, which the kernel segments again; other
  batches are walked packet by packet and merged run by run (``tun_gso.coalesce``).

The forwarding thread runs at nice ``FWD_NICE`` (root only): in a lab the hosts whose
packets it carries share the CPUs, and a starved forwarder lets the TUN queue overflow.

The forwarding table is the backend's own: per (iid, family) a map of mask length ->
{masked value: entry}, with a host-route cache in front, both replaced (never mutated in
place) by the loop thread that calls ``install`` / ``remove``, so the forwarding thread
needs no lock.

Offload: the TUN devices carry a virtio_net_hdr (``offload=True``, the default).  With
``tso=False`` (the default) the kernel segments TCP super-packets and completes
checksums before handing packets to the ITR, which is cheaper than doing it in Python;
with ``tso=True`` the ITR receives 64 KB TCP super-packets and cuts them into MSS-sized
packets itself (``tun_gso.segment_l4``).  Either way every LISP packet on the underlay
carries one ordinary inner IP packet.

Tunnel offload (``tun_tnl``, Linux 6.17+; ``tunnel_offload=None`` uses it when the kernel
has it): TCP entering on an instance's LAN is routed (``ipproto tcp`` rule, table
``TCP_TABLE_BASE + iid``) into a second TUN, ``lisp<iid>t``, that hands over TSO
super-packets; each leaves in one write to the TAP ``lispu`` as a UDP-tunnel super-packet
that the kernel cuts into LISP packets only where a device needs it.  The ETR writes such
a super-packet, received whole, to its TUN in one GSO write.  With the TCP TUN in place,
the ETR writes every decapsulated packet into it (it has the virtio-net header GSO writes
need; an ``iif`` rule routes them like the LAN's), and ``lisp<iid>`` is opened without a
virtio-net header: it only carries the LAN's other traffic to the ITR, already finished
by the kernel.  With USO (``tun_uso``, ``udp_offload``) the TCP TUN takes the LAN's UDP
too (``ipproto udp`` rule), as GRO-merged runs of datagrams that cross the same way; the
LAN interface gets GRO, UDP GRO forwarding and batched NAPI polls for it, put back on
stop.  Kernel-side set-up lives in ``tun_setup``.

Misses are punted to the daemon's loop with ``call_soon_threadsafe`` (at most
``PUNT_LIMIT`` packets per destination until the table changes, so a resolution in
progress cannot flood the loop).  Locator-status-bits received from a peer are reported
through ``on_lsb`` when they change.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import secrets
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from . import netlink
from .base import FwdEntry, IPAddr, Miss, MissCallback
from .encap import DATA_PORT, choose_locator, flow_hash, inner_tos, inner_ttl, lisp_header, outer_cmsg
from .lan_gro import LanGro
from .tun_ecn import enable_outer_info
from .tun_etr import EtrPath, LsbCallback
from .tun_gso import VNET_HDR_LEN, segment_l4
from .tun_itr import BUDGET, TCP_BUDGET, Arena, Flow, ItrPath
from .tun_setup import TABLE_BASE, TunSetup
from .tun_tnl import (
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    TUN_F_TSO_ECN,
    TUNSETOFFLOAD,
    TunnelHeader,
    drain_tap,
    hw_address,
    open_tap,
)
from .tun_uso import TUN_F_USO4, TUN_F_USO6
from .udp_gso import enable_gro

log = logging.getLogger(__name__)

PUNT_LIMIT = 32
SOCK_BUFFER = 8 * 1024 * 1024
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
MAX_SEND_SOCKETS = 1024
FLOW_CACHE_MAX = 65536

FWD_NICE = -10
"""Nice value of the forwarding thread (0 = leave it alone)."""
READ_MAX = 65536 + VNET_HDR_LEN
UDP_NO_CHECK6_RX = 102
_K_TUN = 0
_K_UDP = 1
_K_TCP = 2
_K_TAP = 3


_ENCAP = 0
_NATIVE = 1
_DROP = 2
_PUNT = 3


@dataclass(slots=True)
class _Compiled:
    """A forwarding entry prepared for the fast path."""

    kind: int
    prefix: EidPrefix
    header: bytes = b""
    locs: list[tuple[int, int, bool]] = field(default_factory=list)
    dsts: list[tuple[int, tuple[Any, ...], str]] = field(default_factory=list)  # (family, sockaddr, text)
    only: int | None = None
    drop_reason: str = ""
    counters: list[list[int]] = field(default_factory=list)


class _Table:
    """LPM for one (iid, family): mask length -> {masked int: compiled entry}."""

    __slots__ = ("bits", "by_len", "lengths")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.by_len: dict[int, dict[int, _Compiled]] = {}
        self.lengths: list[int] = []

    def lookup(self, value: int) -> _Compiled | None:
        bits = self.bits
        for length in self.lengths:
            hit = self.by_len[length].get(value >> (bits - length))
            if hit is not None:
                return hit
        return None


class TunDataplane(ItrPath, EtrPath, TunSetup):
    """User-space LISP forwarding over TUN devices and UDP 4341 sockets."""

    name = "tun"

    def __init__(
        self,
        tun_prefix: str = "lisp",
        default_route: bool = True,
        mtu: int = 1500,
        offload: bool = True,
        tso: bool = False,
        gso: bool = True,
        fwd_nice: int = FWD_NICE,
        tunnel_offload: bool | None = None,
        udp_offload: bool = True,
        lan_gro: bool = True,
        lan_batch_us: int = 20,
    ) -> None:
        self.tun_prefix = tun_prefix
        self.offload = offload
        self.tso = tso and offload
        self.gso = gso
        self.fwd_nice = fwd_nice
        # None: use UDP-tunnel GSO (tun_tnl) when the kernel offers it
        self.tunnel_offload = tunnel_offload if offload and gso else False
        self.udp_offload = udp_offload
        """With the TCP TUN: UDP from the LAN goes there too, as GRO-merged super-packets (tun_uso)."""
        self._lan = LanGro(lan_batch_us) if lan_gro else None
        """GRO on the LANs (``lan_gro``): without it nothing merges, UDP stays off the TCP TUN."""
        self._uso: set[int] = set()
        self._tap_fd: int | None = None
        self._tap_mac = b""
        self._tap_scratch = bytearray(65536 + 64)
        self._tcp_fds: dict[int, int] = {}
        self._readers: dict[int, Callable[[memoryview], int | None]] = {}
        self._wr_fds: dict[int, int] = {}
        """iid -> the TUN the ETR writes to (one with a virtio-net header when offload is on)."""
        self._vnet_fds: set[int] = set()
        self._tnl_tx = [0, 0]
        self._tnl_rx = [0, 0]
        """Super-packets sent / received whole: all, UDP ones."""
        self.default_route = default_route
        self.mtu = mtu
        self.on_lsb: LsbCallback | None = None
        self._on_miss: MissCallback | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._instances: dict[int, str] = {}
        self._tun_fds: dict[int, int] = {}
        self._routes: dict[int, list[EidPrefix]] = {}
        self._entries: dict[EidPrefix, FwdEntry] = {}
        self._compiled: dict[EidPrefix, _Compiled] = {}
        self._tables: dict[tuple[int, int], _Table] = {}
        self._flow: dict[tuple[int, bytes], _Compiled] = {}
        self._punted: dict[tuple[int, bytes], int] = {}
        self._rlocs: list[IPAddr] = []
        self._lsb: int | None = None
        self._rx: dict[int, socket.socket] = {}
        self._tx: dict[tuple[int, int], socket.socket] = {}
        self._tx_lock = threading.Lock()
        self._raw: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._epoll: Any = None
        self._kinds: dict[int, tuple[int, Any]] = {}
        # one read slot per packet of a drain: a TSO super-packet or one MTU-sized packet
        slot_size = READ_MAX if self.tso else max(2048, (mtu + VNET_HDR_LEN + 63) & ~63)
        self._small = Arena(bytearray(BUDGET * slot_size), slot_size, BUDGET)
        self._big: Arena | None = None
        self._flows5: dict[int, dict[Any, Flow]] = {}
        self._rbuf = bytearray(65536)
        self._rbuf_mv = memoryview(self._rbuf)
        self._sends = [0, 0]
        self._stopping = threading.Event()
        self._started = False
        self._created_tables: set[int] = set()
        self._lsb_seen: dict[tuple[int, str], int] = {}
        # counters (written by the forwarding threads; read racily for stats)
        self._drops: dict[str, int] = {}
        self._decap: dict[str, list[int]] = {}
        self._misses = [0]
        self._gso_rx = [0]
        self._gso_tx = [0]
        self._native = [0, 0]
        self._released: dict[EidPrefix, list[list[int]]] = {}

    # --- lifecycle ------------------------------------------------------------------
    def start(self, on_miss: MissCallback) -> None:
        self._on_miss = on_miss
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._stopping.clear()
        self._started = True
        self._epoll = select.epoll()
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._rx[family] = self._open_rx(family)
            except OSError as e:
                log.warning("cannot open UDP %d socket (family %d): %s", DATA_PORT, family, e)
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._raw[family] = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except OSError as e:
                log.warning("no raw socket for native forwarding (family %d): %s", family, e)
        for sock in self._rx.values():
            self._watch(sock.fileno(), _K_UDP, sock)
        if self.tunnel_offload is not False:
            self._open_tap()
        for iid in list(self._instances):
            self._setup_instance(iid)
        self._spawn("lisp-fwd", self._fwd_loop)

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._kinds.clear()
        fds = [*self._tun_fds.values(), *self._tcp_fds.values()]
        if self._tap_fd is not None:
            fds.append(self._tap_fd)
        for fd in fds:
            try:
                os.close(fd)  # the TUN device disappears with its last fd
            except OSError:
                pass
        self._tun_fds.clear()
        self._tcp_fds.clear()
        self._readers.clear()
        self._wr_fds.clear()
        self._vnet_fds.clear()
        self._tap_fd = None
        for sock in [*self._rx.values(), *self._tx.values(), *self._raw.values()]:
            sock.close()
        self._rx.clear()
        self._tx.clear()
        self._raw.clear()
        if self._created_tables:
            netlink.in_thread(self._cleanup_tables, sorted(self._created_tables))
            self._created_tables.clear()
        if self._lan is not None:
            self._lan.restore()
        self._uso.clear()
        self._started = False

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _open_rx(self, family: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _big_buffers(sock)
        if self.gso:
            enable_gro(sock)
        enable_outer_info(sock, family)  # the outer TTL and ToS of each datagram (tun_ecn)
        if family == socket.AF_INET6:
            # RFC 9300 section 5.3 / RFC 6935: accept LISP over IPv6 with a zero UDP checksum
            try:
                sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)
            except OSError:
                pass
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", DATA_PORT))
        sock.setblocking(False)
        return sock

    # --- configuration ----------------------------------------------------------------
    def set_local_rlocs(self, rlocs: list[IPAddr], lsb: int) -> None:
        self._rlocs = list(rlocs)
        self._lsb = lsb
        with self._tx_lock:
            for s in self._tx.values():
                s.close()
            self._tx.clear()
        self._recompile()

    def set_instances(self, instances: dict[int, str]) -> None:
        """instance-id -> LAN interface of that instance ("" = main table, no LAN)."""
        old = set(self._instances)
        self._instances = dict(instances)
        if self._started:
            for iid in instances:
                if iid not in old:
                    self._setup_instance(iid)

    def add_routes(self, iid: int, prefixes: list[EidPrefix]) -> None:
        """Steer ``prefixes`` into the TUN of ``iid`` (a PITR's EID space)."""
        self._routes.setdefault(iid, []).extend(prefixes)
        if self._started and iid in self._tun_fds:
            netlink.in_thread(self._install_routes, iid, prefixes)

    def _setup_instance(self, iid: int) -> None:
        dev = self.device(iid)
        # split: TCP from the LAN goes to a TUN of its own that hands over TSO super-packets,
        # written out whole through the tunnel-offload TAP, and takes the ETR's writes (GSO
        # super-packets need its virtio-net header); the plain TUN then only carries the
        # LAN's other traffic to the ITR, finished by the kernel, without a virtio-net
        # header (a cheaper read per packet)
        split = self._tap_fd is not None and bool(self._instances.get(iid)) and not self.tso
        vnet = self.offload and not split
        fd = netlink.create_tun(dev, vnet_hdr=vnet)
        if vnet:
            # what the kernel may hand over: TSO super-packets with partial checksums, or
            # (the default) finished packets, segmented and checksummed by the kernel
            flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if self.tso else 0
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
            self._vnet_fds.add(fd)
        os.set_blocking(fd, False)
        self._tun_fds[iid] = fd
        self._wr_fds[iid] = fd
        self._readers[fd] = io.FileIO(fd, "rb", closefd=False).readinto
        if split:
            tfd = netlink.create_tun(self.tcp_device(iid), vnet_hdr=True)
            flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
            if self.udp_offload and self._lan is not None:
                try:  # USO (Linux 6.2+): the LAN's UDP comes here too, in GRO-merged runs
                    fcntl.ioctl(tfd, TUNSETOFFLOAD, flags | TUN_F_USO4 | TUN_F_USO6)
                    self._uso.add(iid)
                except OSError as e:
                    log.info("instance %d: the TUN refuses USO (%s): no UDP super-packets", iid, e)
            if iid not in self._uso:
                fcntl.ioctl(tfd, TUNSETOFFLOAD, flags)
            os.set_blocking(tfd, False)
            self._tcp_fds[iid] = tfd
            self._wr_fds[iid] = tfd
            self._vnet_fds.add(tfd)
            self._readers[tfd] = io.FileIO(tfd, "rb", closefd=False).readinto
            if self._big is None:
                self._big = Arena(bytearray(TCP_BUDGET * READ_MAX), READ_MAX, TCP_BUDGET)
        netlink.in_thread(self._configure_instance, iid, dev)
        self._watch(fd, _K_TUN, iid)
        if iid in self._tcp_fds:
            self._watch(self._tcp_fds[iid], _K_TCP, iid)

    def _open_tap(self) -> None:
        """The tunnel-offload TAP (``tun_tnl``), when the kernel has UDP-tunnel GSO."""
        name = f"{self.tun_prefix}u"
        try:
            fd = open_tap(name)
            self._tap_mac = hw_address(name)
            netlink.in_thread(self._configure_tap, name)
        except OSError as e:
            log.info("no UDP-tunnel GSO (%s): TCP super-packets are cut in user space", e)
            if self.tunnel_offload:
                raise
            return
        self._tap_fd = fd
        self._watch(fd, _K_TAP, fd)

    # --- forwarding table -----------------------------------------------------------------
    def install(self, entry: FwdEntry) -> None:
        self._entries[entry.prefix] = entry
        self._compiled[entry.prefix] = self._compile(entry)
        self._rebuild()

    def remove(self, prefix: EidPrefix) -> None:
        if self._entries.pop(prefix, None) is not None:
            self._compiled.pop(prefix, None)
            self._rebuild()

    def _recompile(self) -> None:
        self._compiled = {p: self._compile(e) for p, e in self._entries.items()}
        self._rebuild()

    def _rebuild(self) -> None:
        tables: dict[tuple[int, int], _Table] = {}
        for prefix, c in self._compiled.items():
            if not isinstance(prefix.address, IPv4Address | IPv6Address):
                continue
            bits = prefix.max_len
            t = tables.setdefault((prefix.iid, prefix.address.version), _Table(bits))
            t.by_len.setdefault(prefix.mask_len, {})[int(prefix.address) >> (bits - prefix.mask_len)] = c
        for t in tables.values():
            t.lengths = sorted(t.by_len, reverse=True)
        # publish: the forwarding threads pick up the new objects on their next packet
        self._tables = tables
        self._flow = {}
        self._flows5 = {}
        self._punted = {}

    def _compile(self, entry: FwdEntry) -> _Compiled:
        old = self._compiled.get(entry.prefix)
        if entry.locators:
            c = _Compiled(_ENCAP, entry.prefix)
            lsb = self._lsb
            c.header = lisp_header(secrets.randbits(24), entry.prefix.iid, lsb)
            usable = []
            for i, loc in enumerate(entry.locators):
                fam = socket.AF_INET if loc.address.version == 4 else socket.AF_INET6
                has_src = any(r.version == loc.address.version for r in self._rlocs) or not self._rlocs
                up = loc.up and has_src
                c.locs.append((loc.priority, loc.weight, up))
                c.dsts.append((fam, (str(loc.address), DATA_PORT), str(loc.address)))
                c.counters.append([0, 0])
                if up and loc.priority != 255:
                    usable.append(i)
            if old is not None and len(old.counters) == len(c.counters):
                c.counters = old.counters
            best = choose_locator(c.locs, 0)
            if best is None:
                c.kind = _DROP
                c.drop_reason = "no-usable-rloc"
            else:
                prio = c.locs[best][0]
                cands = [i for i in usable if c.locs[i][0] == prio]
                c.only = cands[0] if len(cands) == 1 else None
            return c
        if entry.action == Action.NATIVELY_FORWARD:
            return _Compiled(_NATIVE, entry.prefix)
        if entry.action == Action.SEND_MAP_REQUEST:
            return _Compiled(_PUNT, entry.prefix)
        return _Compiled(_DROP, entry.prefix, drop_reason=f"negative-{entry.action.name.lower()}")

    def _drop(self, reason: str) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1

    # --- the forwarding thread -----------------------------------------------------------
    def _watch(self, fd: int, kind: int, arg: Any) -> None:
        """Add ``fd`` to the forwarding thread's epoll set (safe from any thread)."""
        self._kinds[fd] = (kind, arg)
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)

    def _fwd_loop(self) -> None:
        """One thread polls every TUN fd and UDP 4341 socket: no GIL contest between them."""
        ep = self._epoll
        assert ep is not None
        if self.fwd_nice:
            # the forwarding thread competes for the CPUs with the applications whose
            # packets it carries (the lab's hosts share the machine); a higher weight
            # keeps the TUN queue drained instead of letting it overflow
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.fwd_nice)
            except OSError as e:
                log.info("forwarding thread keeps the default priority: %s", e)
        kinds = self._kinds
        stopping = self._stopping
        drain_tun = self._drain_tun
        drain_rx = self._drain_rx
        small = self._small
        vnet_fds = self._vnet_fds
        while not stopping.is_set():
            try:
                events = ep.poll(0.2)
            except OSError:
                if stopping.is_set():
                    return
                raise
            for fd, _ev in events:
                k = kinds.get(fd)
                if k is None:
                    continue
                try:
                    kind = k[0]
                    if kind == _K_TUN:
                        drain_tun(fd, k[1], small, fd in vnet_fds)
                    elif kind == _K_UDP:
                        drain_rx(k[1])
                    elif kind == _K_TCP:
                        assert self._big is not None
                        drain_tun(fd, k[1], self._big, True)
                    else:
                        drain_tap(fd, self._tap_scratch)
                except Exception:  # noqa: BLE001 - the fast path must survive any packet
                    log.exception("forwarding error")
                    self._drop("bug")

    # --- the ITR fast path ---------------------------------------------------------------
    def _resolve(self, iid: int, flows: dict[Any, Flow] | None, key: Any, pkt: memoryview, m: int,
                 gso_size: int = 0) -> Flow | None:
        ver = pkt[0] >> 4
        dst = bytes(pkt[16:20]) if ver == 4 else bytes(pkt[24:40])
        dkey = (iid, dst)
        c = self._flow.get(dkey) or self._lookup(iid, ver, dkey)
        if c is None or c.kind != _ENCAP:
            # a TSO super-packet that is not encapsulated is cut into ordinary packets first
            pieces = [pkt] if not gso_size else [memoryview(h + bytes(d)) for h, d in segment_l4(pkt, gso_size)]
            for piece in pieces:
                if c is None:
                    self._punt(iid, dkey, piece)
                else:
                    self._other(c, iid, dkey, ver, dst, piece, len(piece))
            return None
        h = flow_hash(pkt)
        idx = c.only
        if idx is None:
            idx = choose_locator(c.locs, h)
            if idx is None:
                self._drop("no-usable-rloc")
                return None
        fam, addr, text = c.dsts[idx]
        sock = self._tx.get((fam, h & 0x0FFF)) or self._tx_socket(fam, h & 0x0FFF)
        ttl, tos = inner_ttl(pkt), inner_tos(pkt)
        f = Flow(sock, addr, c.header, c.counters[idx], list(outer_cmsg(fam, ttl, tos)))
        if self._tap_fd is not None:
            src = next((r for r in self._rlocs if (r.version == 4) == (fam == socket.AF_INET)), None)
            if src is not None:
                # the kernel forwards what the TAP receives: one more TTL, spent on the way out
                f.tnl = TunnelHeader(self._tap_mac, str(src), text, 0xF000 | (h & 0x0FFF), c.header,
                                     ttl=min(ttl + 1, 255), tos=tos)
        if flows is not None:
            if len(flows) >= FLOW_CACHE_MAX:
                flows.clear()
            flows[key] = f
        return f

    def _lookup(self, iid: int, ver: int, key: tuple[int, bytes]) -> _Compiled | None:
        table = self._tables.get((iid, ver))
        c = table.lookup(int.from_bytes(key[1], "big")) if table is not None else None
        if c is not None:
            flow = self._flow
            if len(flow) >= FLOW_CACHE_MAX:
                flow.clear()
            flow[key] = c
        return c

    def _other(self, c: _Compiled, iid: int, key: tuple[int, bytes], ver: int, dst: bytes,
               pkt: memoryview, n: int) -> None:
        """Negative entries: natively forward, punt to the control plane, or drop."""
        if c.kind == _NATIVE:
            raw = self._raw.get(socket.AF_INET if ver == 4 else socket.AF_INET6)
            if raw is None:
                self._drop("native-unavailable")
                return
            try:
                raw.sendto(pkt, (str(ip_address(dst)), 0))
                self._native[0] += 1
                self._native[1] += n
            except OSError:
                self._drop("native-error")
        elif c.kind == _PUNT:
            self._punt(iid, key, pkt)
        else:
            self._drop(c.drop_reason)

    def _forward(self, iid: int, pkt: memoryview, n: int) -> None:
        """Forward one packet right away (``inject`` from the daemon's loop)."""
        ver = pkt[0] >> 4
        if (ver != 4 or n < 20) and (ver != 6 or n < 40):
            self._drop("not-ip" if ver not in (4, 6) else "short-packet")
            return
        f = self._resolve(iid, None, None, pkt, n)
        if f is not None:
            f.start([f.header, pkt], n + 8)
            self._flush(f)

    def _punt(self, iid: int, key: tuple[int, bytes], pkt: memoryview) -> None:
        self._misses[0] += 1
        count = self._punted.get(key, 0)
        if count >= PUNT_LIMIT:
            self._drop("miss-rate-limited")
            return
        self._punted[key] = count + 1
        cb = self._on_miss
        if cb is None:
            self._drop("no-control-plane")
            return
        data = bytes(pkt)
        if data[0] >> 4 == 4:
            src: IPAddr = IPv4Address(data[12:16])
            dst: IPAddr = IPv4Address(data[16:20])
        else:
            src = IPv6Address(data[8:24])
            dst = IPv6Address(data[24:40])
        miss = Miss(iid, src, dst, data)
        if self._loop is not None and threading.current_thread() is not threading.main_thread():
            try:
                self._loop.call_soon_threadsafe(cb, miss)
            except RuntimeError:
                self._drop("loop-closed")
        else:
            cb(miss)

    def _tx_socket(self, family: int, port_bits: int) -> socket.socket:
        with self._tx_lock:
            sock = self._tx.get((family, port_bits))
            if sock is not None:
                return sock
            src = next((r for r in self._rlocs if (r.version == 4) == (family == socket.AF_INET)), None)
            host = str(src) if src is not None else ("::" if family == socket.AF_INET6 else "0.0.0.0")
            sock = socket.socket(family, socket.SOCK_DGRAM)
            _big_buffers(sock)
            if len(self._tx) < MAX_SEND_SOCKETS:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, 0xF000 | port_bits))
                except OSError:
                    sock.close()
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    _big_buffers(sock)
                    sock.bind((host, 0))
            else:
                sock.bind((host, 0))
            self._tx[(family, port_bits)] = sock
            return sock

    def inject(self, iid: int, packet: bytes) -> None:
        """Forward a packet the control plane held (queued during resolution)."""
        if packet:
            try:
                self._forward(iid, memoryview(packet), len(packet))
            except Exception:  # noqa: BLE001
                log.exception("inject failed")

    # --- stats -----------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {"misses": self._misses[0]}
        enc_p = enc_b = 0
        for c in list(self._compiled.values()):
            for (_fam, _addr, text), (p, b) in zip(c.dsts, c.counters, strict=False):
                if p:
                    out[f"encap.packets.{text}"] = out.get(f"encap.packets.{text}", 0) + p
                    out[f"encap.bytes.{text}"] = out.get(f"encap.bytes.{text}", 0) + b
                    enc_p += p
                    enc_b += b
        out["encap.packets"] = enc_p
        out["encap.bytes"] = enc_b
        dec_p = dec_b = 0
        for text, (p, b) in list(self._decap.items()):
            out[f"decap.packets.{text}"] = p
            out[f"decap.bytes.{text}"] = b
            dec_p += p
            dec_b += b
        out["decap.packets"] = dec_p
        out["decap.bytes"] = dec_b
        out["gso.super-packets"] = self._gso_rx[0]
        out["gso.coalesced-writes"] = self._gso_tx[0]
        out["gso.udp-sends"] = self._sends[0]
        out["gso.udp-packets"] = self._sends[1]
        out["tnl.super-packets"] = self._tnl_tx[0]
        out["tnl.super-datagrams"] = self._tnl_rx[0]
        out["tnl.udp-super-packets"] = self._tnl_tx[1]
        out["tnl.udp-super-datagrams"] = self._tnl_rx[1]
        out["native.packets"] = self._native[0]
        out["native.bytes"] = self._native[1]
        for reason, n in list(self._drops.items()):
            out[f"drop.{reason}"] = n
        return out

    def entries(self) -> list[FwdEntry]:
        return list(self._entries.values())


def _big_buffers(sock: socket.socket) -> None:
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCK_BUFFER)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, SOCK_BUFFER)
            except OSError:
                pass


__all__ = ["TunDataplane", "TABLE_BASE"]
