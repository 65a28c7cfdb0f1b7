"""eBPF LISP data plane: tc clsact programs programmed from Python.

``bpf/lisp.bpf.c`` holds two direct-action programs: ``lisp_encap`` on the ingress of
every EID-facing interface (ITR) and ``lisp_decap`` on the ingress of the RLOC-facing
interfaces (ETR).  This module loads the pre-built object with libbpf (ctypes, see
:mod:`.libbpf`), attaches the programs and keeps the maps in step with the daemon:

* ``install`` / ``remove`` write the LPM-trie maps ``fwd_v4`` / ``fwd_v6`` keyed by
  (instance-id, EID prefix): one ``bpf_map_update_elem`` syscall, effective for the
  next packet (microseconds, far inside the 10 ms budget).
* ``set_instances`` fills ``eid_ifaces`` (ifindex -> instance-id, for encapsulation) and
  ``instances`` (instance-id -> interface and routing table, for decapsulation).  An
  instance interface may be a VRF: its slaves become the EID-facing interfaces and its
  table receives the decapsulated packets.  A plain interface gets a routing table of
  our own (``table_base`` + n) holding its connected prefixes, so two instances may use
  the same EID prefixes (the lab adds LAN addresses without prefix routes); an empty
  interface name (a PITR without a LAN) means the main table.
* ``set_local_rlocs`` fills ``local_rlocs`` (decapsulation targets) and ``config`` (the
  outer source per family and the site's locator-status-bits).
* misses come back through a ring buffer (one event per destination per 100 ms, with
  up to 1536 bytes of the packet) read on the daemon's event loop (``add_reader`` on the
  ring's epoll fd) or, without a running loop, by a reader thread; each becomes a
  :class:`~.base.Miss`.  The ITR queues the packet while it resolves and hands it back
  through ``inject``, which encapsulates it in user space (UDP 4341 from our RLOC), so
  the first packet of a flow is not lost.
* GSO batches of LISP datagrams (a user-space ITR's ``UDP_SEGMENT`` sends cross a veth
  whole; UDP GRO builds them on receive) cannot be decapsulated in one go: the program
  redirects them through a veth pair of ours that segments them (:mod:`.ebpf_gso`),
  then decapsulates each datagram on the pair's far end (``decap.gso-batches``).
* too big (RFC 9300 7.1, stateless): a packet that does not fit the egress once
  encapsulated is punted through the same ring buffer; :mod:`.ebpf_slow` sends it
  through a UDP socket (the kernel fragments the outer packet, DF clear) and tells a
  PMTUD sender (IPv4 DF, IPv6) the MTU left with ICMP; outer fragments arriving here are
  reassembled by the kernel for UDP 4341 sockets on the local RLOCs and decapsulated in
  user space.
* route lookups (outer RLOC, decapsulated inner destination) go through a per-CPU
  one-entry cache valid for one timer tick (the interface and instance lookups too);
  nonces come from a per-CPU xorshift reseeded from the kernel PRNG; per-RLOC counters
  go through a per-CPU recent-RLOC entry flushed to the ``rloc_stats`` hash when the
  RLOC changes.
* ``stats`` sums the per-CPU counters (also under the TUN backend's names:
  ``encap.packets``, ``encap.packets.<rloc>``, ``drop.<reason>`` ...); ``stop`` detaches
  the filters, removes the clsact qdiscs, the segmenting veth pair and the routing
  tables it created and closes the object, which frees programs and maps.  ``start``
  first removes filters (and the veth pair) a killed predecessor left behind.

Every pyroute2 call runs on a short-lived thread (:func:`.libbpf.run_in_netns`):
pyroute2 0.9 cannot be used from a thread whose asyncio loop is running, and the
daemon calls us on its loop.  ``install``/``remove`` need no netlink at all (one
``bpf(2)`` syscall each).

The programs use the same RLOC choice as the user-space path (``encap.choose_locator``):
best priority among up locators (255 = unusable), weighted by the flow hash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import select
import socket
import struct
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from ..db.lpm import LpmTable
from ..wire.prefix import EidPrefix
from . import ebpf_gso, ebpf_slow, libbpf
from .base import FwdEntry, IPAddr, MissCallback
from .ebpf_maps import (
    _CONFIG,
    _MISS_EVENT,
    _PAIR,
    _RLOC_KEY,
    _RLOC_RECENT,
    _RLOC_STAT,
    _RLOC_STAT_KEY,
    _U32,
    CFG_LSB_VALID,
    CFG_MISS_PASS,
    COUNTERS,
    DECAP_PRIORITY,
    ENCAP_PRIORITY,
    ENTRY_SIZE,
    EV_TOO_BIG,
    RTPROT_LISPNET,
    TABLE_BASE,
    TC_HANDLE,
    decode_entry,
    encode_entry,
    lpm_key,
    parse_miss_event,
    rloc_key,
)
from .encap import DATA_PORT, choose_locator, lisp_header

log = logging.getLogger(__name__)

OBJECT_PATH = Path(__file__).resolve().parent / "bpf" / "lisp.bpf.o"

# --- interfaces -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Instance:
    iid: int
    ifindex: int
    """The instance interface (or VRF device)."""
    table: int
    """Its routing table (0 = main)."""
    eid_ifindexes: tuple[int, ...]
    """Where the ITR program is attached (the interface, or the VRF's slaves)."""


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name) if hasattr(msg, "get_attr") else None


def _resolve_instance(ipr: Any, iid: int, ifname: str, own_table: int) -> _Instance:
    """Where instance ``iid`` lives; a plain interface gets ``own_table`` (filled by the caller)."""
    if not ifname:
        return _Instance(iid, 0, 0, ())
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ValueError(f"instance-id {iid}: no interface {ifname}")
    ifindex = int(found[0])
    link = ipr.get_links(ifindex)[0]
    info = _attr(link, "IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind == "vrf":
        data = info.get_attr("IFLA_INFO_DATA")
        table = int(data.get_attr("IFLA_VRF_TABLE")) if data is not None else 0
        slaves = tuple(int(lk["index"]) for lk in ipr.get_links() if _attr(lk, "IFLA_MASTER") == ifindex)
        return _Instance(iid, ifindex, table, slaves)
    return _Instance(iid, ifindex, own_table, (ifindex,))


def _fill_table(ipr: Any, table: int, ifindex: int) -> None:
    """Flush ``table`` and give it the connected prefixes of ``ifindex``."""
    _flush_tables(ipr, [table])
    for msg in ipr.get_addr(index=ifindex):
        addr = str(_attr(msg, "IFA_ADDRESS") or "")
        if not addr or addr.startswith("fe80"):
            continue
        import ipaddress

        net = ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}").network
        family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
        ipr.route(
            "replace", family=family, dst=str(net.network_address), dst_len=net.prefixlen, oif=ifindex,
            table=table, proto=RTPROT_LISPNET, scope=253,
        )  # fmt: skip
    # Without a default the kernel's FIB reports "not forwarded" for any other
    # destination, which the programs read as local; unreachable makes it a miss.
    for family, dst in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        ipr.route("replace", family=family, dst=dst, dst_len=0, table=table, type=7, proto=RTPROT_LISPNET)


def _flush_tables(ipr: Any, tables: list[int]) -> None:
    for table in tables:
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                ipr.flush_routes(table=table, family=family)
            except Exception:  # noqa: BLE001 - keep cleaning up
                pass


def _ifaces_with(ipr: Any, addrs: Iterable[IPAddr]) -> list[int]:
    """Indexes of the non-loopback interfaces holding any of ``addrs``."""
    wanted = {str(a) for a in addrs}
    out: list[int] = []
    for msg in ipr.get_addr():
        if str(_attr(msg, "IFA_ADDRESS")) in wanted or str(_attr(msg, "IFA_LOCAL")) in wanted:
            idx = int(msg["index"])
            if idx != 1 and idx not in out:
                out.append(idx)
    return out


class EbpfDataplane:
    """The eBPF backend (see the module docstring)."""

    name = "ebpf"

    def __init__(
        self,
        *,
        rloc_ifaces: Sequence[str] | None = None,
        netns: str | None = None,
        object_path: str | Path | None = None,
        miss_to_stack: bool = False,
        underlay_table: int = 0,
        table_base: int = TABLE_BASE,
        gso_segmenter: bool = True,
    ) -> None:
        """``rloc_ifaces``: where to attach decapsulation (default: the interfaces holding a
        local RLOC).  ``netns``: the network namespace the interfaces live in (default:
        the caller's).  ``miss_to_stack``: pass missed packets to the kernel stack (e.g.
        toward a TUN device) instead of dropping them.  ``underlay_table``: the routing
        table for the outer lookup (0 = main).  ``gso_segmenter``: keep the veth pair that
        segments GSO batches of LISP datagrams (:mod:`.ebpf_gso`); without it they go to
        the kernel stack."""
        self._rloc_ifnames = list(rloc_ifaces) if rloc_ifaces is not None else None
        self._netns = netns
        self._object_path = Path(object_path) if object_path else OBJECT_PATH
        self._miss_to_stack = miss_to_stack
        self._underlay_table = underlay_table
        self._table_base = table_base
        self._want_segmenter = gso_segmenter
        self._seg: ebpf_gso.Segmenter | None = None
        self._slow: ebpf_slow.SlowPath | None = None
        self._slow_fds: list[int] = []
        self._own_tables: set[int] = set()
        self._tx: dict[int, socket.socket] = {}
        self._injected = [0, 0]
        self._obj: libbpf.BpfObject | None = None
        self._maps: dict[str, libbpf.BpfMap] = {}
        self._on_miss: MissCallback | None = None
        self._ring: libbpf.RingBuffer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rlocs: list[IPAddr] = []
        self._lsb = 0
        self._instances: dict[int, str] = {}
        self._resolved: dict[int, _Instance] = {}
        self._entries: dict[EidPrefix, FwdEntry] = {}
        self._lpm: LpmTable[FwdEntry] = LpmTable()  # user-space sends (held, too-big packets)
        # ifindex -> priority of our filter there; ifindexes whose clsact qdisc we created
        self._attached: dict[tuple[int, int], int] = {}
        self._created_hooks: set[int] = set()

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._obj is not None

    def start(self, on_miss: MissCallback) -> None:
        if self._obj is not None:
            raise RuntimeError("eBPF data plane already started")
        if not self._object_path.exists():
            raise FileNotFoundError(
                f"{self._object_path} missing: run `python -m lispnet.dataplane.bpf_build` (scripts/setup)"
            )
        self._on_miss = on_miss
        self._obj = libbpf.BpfObject(str(self._object_path))
        try:
            fd = self._obj.map_fd
            self._maps = {
                "fwd_v4": libbpf.BpfMap(fd("fwd_v4"), "fwd_v4", 12, ENTRY_SIZE),
                "fwd_v6": libbpf.BpfMap(fd("fwd_v6"), "fwd_v6", 24, ENTRY_SIZE),
                "config": libbpf.BpfMap(fd("config"), "config", 4, _CONFIG.size),
                "eid_ifaces": libbpf.BpfMap(fd("eid_ifaces"), "eid_ifaces", 4, 8),
                "instances": libbpf.BpfMap(fd("instances"), "instances", 4, 8),
                "local_rlocs": libbpf.BpfMap(fd("local_rlocs"), "local_rlocs", _RLOC_KEY.size, 1),
                "counters": libbpf.BpfMap(fd("counters"), "counters", 4, 8, per_cpu=True),
                "rloc_stats": libbpf.BpfMap(
                    fd("rloc_stats"), "rloc_stats", _RLOC_STAT_KEY.size, _RLOC_STAT.size, per_cpu=True
                ),
                "rloc_recent": libbpf.BpfMap(fd("rloc_recent"), "rloc_recent", 4, _RLOC_RECENT.size, per_cpu=True),
            }
            self._remove_stale_filters()
            self._slow = ebpf_slow.SlowPath(self._netns, self._send_encapsulated, self._instance_devices)
            self._start_segmenter()
            self._write_config()
            self._apply_rlocs()
            self._apply_instances()
            for entry in self._entries.values():
                self._write_entry(entry)
            self._start_reader(fd("miss_events"))
        except BaseException:
            self.stop()
            raise
        log.info(
            "eBPF data plane started (%s, %d instances, %d entries)",
            self._object_path.name,
            len(self._resolved),
            len(self._entries),
        )

    def stop(self) -> None:
        self._unwatch_slow()
        self._stop_reader()
        if self._slow is not None:
            self._slow.close()
            self._slow = None
        with libbpf.netns(self._netns):
            for (ifindex, prio), _prog_id in list(self._attached.items()):
                try:
                    libbpf.tc_detach(ifindex, handle=TC_HANDLE, priority=prio)
                except OSError as exc:
                    log.warning("detaching from ifindex %d: %s", ifindex, exc)
            for ifindex in self._created_hooks:
                try:
                    libbpf.tc_hook_destroy(ifindex)
                except OSError as exc:
                    log.warning("removing clsact from ifindex %d: %s", ifindex, exc)
        self._attached.clear()
        self._created_hooks.clear()
        self._resolved.clear()
        if self._seg is not None:
            self._seg = None
            try:
                libbpf.run_in_netns(self._netns, _with_ipr, ebpf_gso.remove)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                log.warning("removing %s: %s", ebpf_gso.SEG_OUT, exc)
        if self._own_tables:
            try:
                libbpf.run_in_netns(self._netns, _with_ipr, _flush_tables, sorted(self._own_tables))
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                log.warning("flushing instance tables: %s", exc)
            self._own_tables.clear()
        for sock in self._tx.values():
            sock.close()
        self._tx.clear()
        if self._obj is not None:
            self._obj.close()
            self._obj = None
        self._maps = {}

    # --- configuration -------------------------------------------------------------------------
    def set_local_rlocs(self, rlocs: list[IPAddr], lsb: int) -> None:
        self._rlocs = list(rlocs)
        self._lsb = lsb
        if self._obj is not None:
            self._write_config()
            self._apply_rlocs()

    def set_instances(self, instances: dict[int, str]) -> None:
        self._instances = dict(instances)
        if self._obj is not None:
            self._apply_instances()

    def install(self, entry: FwdEntry) -> None:
        prefix = entry.prefix.masked()
        if not prefix.is_ip:
            log.debug("eBPF data plane ignores non-IP EID %s", prefix)
            return
        entry = FwdEntry(prefix, entry.locators, entry.action, entry.use_petr)
        self._entries[prefix] = entry
        self._lpm.insert(prefix, entry)
        if self._obj is not None:
            self._write_entry(entry)

    def remove(self, prefix: EidPrefix) -> None:
        prefix = prefix.masked()
        if self._entries.pop(prefix, None) is None:
            return
        self._lpm.delete(prefix)
        if self._obj is None:
            return
        self._fwd_map(prefix).delete(lpm_key(prefix))

    # --- introspection ---------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """The kernel counters, plus the same facts under the TUN backend's names."""
        out = dict.fromkeys(COUNTERS, 0)
        counters = self._maps.get("counters")
        if counters is None:
            return out
        for idx, name in enumerate(COUNTERS):
            raw = counters.lookup(_U32.pack(idx))
            if raw:
                out[name] = sum(v for (v,) in struct.iter_unpack("=Q", raw))
        out["encap.packets"] = out["encapsulated"] + self._injected[0]
        out["encap.bytes"] = out["encap_bytes"] + self._injected[1]
        out["decap.packets"] = out["decapsulated"]
        out["decap.bytes"] = out["decap_bytes"]
        out["native.packets"] = out["native_forwarded"]
        out["injected.packets"] = self._injected[0]
        out["decap.gso-batches"] = out["gso_batches"]
        for name in COUNTERS:
            if name.startswith("drop_") and out[name]:
                out["drop." + name[5:].replace("_", "-")] = out[name]
        if self._slow is not None:
            out.update(self._slow.counters)
        per_rloc: dict[bytes, list[int]] = {}
        rloc_stats = self._maps.get("rloc_stats")
        if rloc_stats is not None:
            for key in rloc_stats.keys():
                raw = rloc_stats.lookup(key)
                if raw is not None:
                    acc = per_rloc.setdefault(key, [0, 0])
                    for packets, nbytes in _RLOC_STAT.iter_unpack(raw):
                        acc[0] += packets
                        acc[1] += nbytes
        recent = self._maps.get("rloc_recent")
        if recent is not None:
            # counts each CPU still holds for its last RLOC (a flush between the two reads
            # can show a packet twice for one read; nothing is ever lost)
            for idx in (0, 1):
                raw = recent.lookup(_U32.pack(idx))
                for key, packets, nbytes in _RLOC_RECENT.iter_unpack(raw or b""):
                    if packets:
                        acc = per_rloc.setdefault(key, [0, 0])
                        acc[0] += packets
                        acc[1] += nbytes
        for key, (packets, nbytes) in per_rloc.items():
            fam, direction, addr = _RLOC_STAT_KEY.unpack(key)
            rloc: IPAddr = IPv4Address(addr[:4]) if fam == 4 else IPv6Address(addr)
            what = "encap" if direction == 0 else "decap"
            out[f"{what}.packets.{rloc}"] = out.get(f"{what}.packets.{rloc}", 0) + packets
            out[f"{what}.bytes.{rloc}"] = out.get(f"{what}.bytes.{rloc}", 0) + nbytes
        return out

    # --- the first packets: sent from user space once resolved ----------------------------------
    def inject(self, iid: int, packet: bytes) -> None:
        """Encapsulate a packet the ITR held during resolution and send it (UDP 4341).

        The kernel path would do the same with the entry now installed; doing it here
        avoids re-entering the packet into an interface's ingress.
        """
        self._send_encapsulated(iid, packet)

    def _send_encapsulated(self, iid: int, packet: bytes) -> bool:
        """Encapsulate through a UDP socket (the kernel fragments a too-big outer packet)."""
        if len(packet) < 20 or packet[0] >> 4 not in (4, 6):
            return False
        if packet[0] >> 4 == 4:
            dst: IPAddr = IPv4Address(packet[16:20])
        elif len(packet) >= 40:
            dst = IPv6Address(packet[24:40])
        else:
            return False
        entry = self._match(iid, dst)
        if entry is None or not entry.locators:
            return False
        locs = [(r.priority, r.weight, r.up and self._has_source(r.address)) for r in entry.locators]
        idx = choose_locator(locs, zlib.crc32(packet[:40]))
        if idx is None:
            return False
        rloc = entry.locators[idx].address
        try:
            sock = self._tx_socket(rloc.version)
            sock.sendto(
                lisp_header(secrets.randbits(24), iid, self._lsb if self._rlocs else None) + packet,
                (str(rloc), DATA_PORT),
            )
        except OSError as exc:
            log.debug("inject to %s: %s", rloc, exc)
            return False
        self._injected[0] += 1
        self._injected[1] += len(packet)
        return True

    def _instance_devices(self, iid: int) -> tuple[str, str] | None:
        """(decapsulation device, first EID-facing device) of an instance, by name."""
        inst = self._resolved.get(iid)
        if inst is None:
            return None
        try:
            with libbpf.netns(self._netns):
                decap = socket.if_indextoname(inst.ifindex)
                eid = socket.if_indextoname(inst.eid_ifindexes[0]) if inst.eid_ifindexes else decap
        except OSError:
            return None
        return decap, eid

    def _match(self, iid: int, dst: IPAddr) -> FwdEntry | None:
        return self._lpm.lookup(EidPrefix(iid, dst, dst.max_prefixlen))

    def _has_source(self, rloc: IPAddr) -> bool:
        return any(a.version == rloc.version for a in self._rlocs)

    def _tx_socket(self, version: int) -> socket.socket:
        sock = self._tx.get(version)
        if sock is None:
            family = socket.AF_INET if version == 4 else socket.AF_INET6
            src = next(a for a in self._rlocs if a.version == version)
            with libbpf.netns(self._netns):
                sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((str(src), 0))
            sock.setblocking(False)
            if version == 4:
                ebpf_slow.allow_outer_fragmentation(sock)
            self._tx[version] = sock
        return sock

    def lookup(self, prefix: EidPrefix) -> tuple[int, list[tuple[IPAddr, int, int, bool]]] | None:
        """The kernel's entry for exactly ``prefix`` (action, locators), or None."""
        if self._obj is None:
            return None
        raw = self._fwd_map(prefix.masked()).lookup(lpm_key(prefix.masked()))
        return decode_entry(raw) if raw is not None else None

    def attached(self) -> dict[int, int]:
        """ifindex -> program id of every filter this backend attached."""
        return {ifindex: prog for (ifindex, _prio), prog in self._attached.items()}

    # --- internals ----------------------------------------------------------------------------------
    def _fwd_map(self, prefix: EidPrefix) -> libbpf.BpfMap:
        return self._maps["fwd_v4" if isinstance(prefix.address, IPv4Address) else "fwd_v6"]

    def _write_entry(self, entry: FwdEntry) -> None:
        self._fwd_map(entry.prefix).update(lpm_key(entry.prefix), encode_entry(entry))

    def _write_config(self) -> None:
        src4 = next((a for a in self._rlocs if isinstance(a, IPv4Address)), None)
        src6 = next((a for a in self._rlocs if isinstance(a, IPv6Address)), None)
        flags = (CFG_MISS_PASS if self._miss_to_stack else 0) | (CFG_LSB_VALID if self._rlocs else 0)
        seg = self._seg or ebpf_gso.Segmenter(0, 0, bytes(6))
        value = _CONFIG.pack(
            self._lsb & 0xFFFFFFFF,
            flags,
            self._underlay_table,
            1 if src4 else 0,
            1 if src6 else 0,
            src4.packed if src4 else bytes(4),
            src6.packed if src6 else bytes(16),
            seg.out_ifindex,
            seg.in_ifindex,
            seg.in_mac,
        )
        self._maps["config"].update(_U32.pack(0), value)

    def _apply_rlocs(self) -> None:
        m = self._maps["local_rlocs"]
        wanted = {rloc_key(a) for a in self._rlocs}
        for key in m.keys():
            if key not in wanted:
                m.delete(key)
        for key in wanted:
            m.update(key, b"\x01")
        if self._rloc_ifnames is not None:
            with libbpf.netns(self._netns):
                ifindexes = [socket_ifindex(name) for name in self._rloc_ifnames]
        else:
            ifindexes = libbpf.run_in_netns(self._netns, _with_ipr, _ifaces_with, list(self._rlocs))
        with libbpf.netns(self._netns):
            prog = self._program("lisp_decap")
            for ifindex in ifindexes:
                self._attach(ifindex, prog, DECAP_PRIORITY)
        if self._slow is not None:
            self._unwatch_slow()
            self._slow.set_rlocs(list(self._rlocs))
            self._watch_slow()

    def _watch_slow(self) -> None:
        """(asyncio mode) read the reassembly sockets on the daemon's loop."""
        if self._loop is None or self._slow is None:
            return
        for sock in self._slow.sockets():
            self._loop.add_reader(sock.fileno(), self._slow.drain, sock)
            self._slow_fds.append(sock.fileno())

    def _unwatch_slow(self) -> None:
        if self._loop is not None:
            for fd in self._slow_fds:
                try:
                    self._loop.remove_reader(fd)
                except (RuntimeError, ValueError):
                    pass
        self._slow_fds = []

    def _resolve_instances(self, ipr: Any) -> dict[int, _Instance]:
        """(netlink thread) Resolve the instances and fill the tables of plain interfaces."""
        resolved: dict[int, _Instance] = {}
        for n, (iid, name) in enumerate(sorted(self._instances.items())):
            inst = _resolve_instance(ipr, iid, name, self._table_base + n)
            if name and inst.table == self._table_base + n:
                _fill_table(ipr, inst.table, inst.ifindex)
                self._own_tables.add(inst.table)
            resolved[iid] = inst
        return resolved

    def _apply_instances(self) -> None:
        resolved = libbpf.run_in_netns(self._netns, _with_ipr, self._resolve_instances)
        with libbpf.netns(self._netns):
            eid_map = self._maps["eid_ifaces"]
            inst_map = self._maps["instances"]
            wanted_eid = {
                ifindex: (inst.iid, inst.table) for inst in resolved.values() for ifindex in inst.eid_ifindexes
            }
            for key in eid_map.keys():
                (ifindex,) = _U32.unpack(key)
                if ifindex not in wanted_eid:
                    eid_map.delete(key)
                    if (ifindex, ENCAP_PRIORITY) in self._attached:
                        libbpf.tc_detach(ifindex, handle=TC_HANDLE, priority=ENCAP_PRIORITY)
                        del self._attached[(ifindex, ENCAP_PRIORITY)]
            for key in inst_map.keys():
                if _U32.unpack(key)[0] not in resolved:
                    inst_map.delete(key)
            for iid, inst in resolved.items():
                inst_map.update(_U32.pack(iid), _PAIR.pack(inst.ifindex, inst.table))
            prog = self._program("lisp_encap")
            for ifindex, (iid, table) in wanted_eid.items():
                eid_map.update(_U32.pack(ifindex), _PAIR.pack(iid, table))
                self._attach(ifindex, prog, ENCAP_PRIORITY)
        self._resolved = resolved

    def _remove_stale_filters(self) -> None:
        """Detach filters a killed predecessor left on any interface of the namespace."""
        with libbpf.netns(self._netns), libbpf.quiet():
            for ifindex, _name in socket.if_nameindex():
                for prio in (ENCAP_PRIORITY, DECAP_PRIORITY):
                    try:
                        if libbpf.tc_detach(ifindex, handle=TC_HANDLE, priority=prio):
                            log.info("removed a stale eBPF filter from ifindex %d", ifindex)
                            self._created_hooks.add(ifindex)
                    except OSError:
                        pass

    def _start_segmenter(self) -> None:
        """The veth pair that segments GSO batches (see :mod:`.ebpf_gso`), decap on its far end."""
        if not self._want_segmenter:
            return
        try:
            self._seg = libbpf.run_in_netns(self._netns, _with_ipr, ebpf_gso.create)
        except Exception as exc:  # noqa: BLE001 - batches then go to the stack
            log.warning("no GSO segmenter (%s): GSO batches of LISP packets go to the kernel stack", exc)
            return
        with libbpf.netns(self._netns):
            self._attach(self._seg.in_ifindex, self._program("lisp_decap"), DECAP_PRIORITY)

    def _program(self, name: str) -> int:
        assert self._obj is not None
        return self._obj.program_fd(name)

    def _attach(self, ifindex: int, prog_fd: int, priority: int) -> None:
        """Attach on ingress (caller is in the right namespace)."""
        if (ifindex, priority) in self._attached:
            return
        if libbpf.tc_hook_create(ifindex):
            self._created_hooks.add(ifindex)
        self._attached[(ifindex, priority)] = libbpf.tc_attach(
            ifindex, prog_fd, handle=TC_HANDLE, priority=priority
        )

    # --- misses ---------------------------------------------------------------------------------------
    def _deliver(self, data: bytes) -> None:
        if self._on_miss is None or len(data) < _MISS_EVENT.size:
            return
        try:
            iid, _family, kind, length, mtu, gso, _src, _dst, head = _MISS_EVENT.unpack_from(data)
            if kind == EV_TOO_BIG:
                if self._slow is not None:
                    whole = parse_miss_event(data).packet  # empty unless copied whole
                    self._slow.too_big(iid, whole, head[:length], mtu, bool(gso))
                return
            self._on_miss(parse_miss_event(data))
        except Exception:  # noqa: BLE001 - keep reading misses whatever the handler does
            log.exception("on_miss handler failed")

    def _start_reader(self, map_fd: int) -> None:
        self._ring = libbpf.RingBuffer(map_fd, self._deliver)
        self._stopping.clear()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if self._loop is not None:
            fd = self._ring.epoll_fd()
            self._loop.add_reader(fd, self._ring.consume)
            self._reader_fd = fd
            self._watch_slow()
            return
        ring = self._ring

        def run() -> None:
            ring_fd = ring.epoll_fd()
            poller = select.poll()
            poller.register(ring_fd, select.POLLIN)
            watched: dict[int, socket.socket] = {}
            while not self._stopping.is_set():
                slow = self._slow
                current = {sock.fileno(): sock for sock in (slow.sockets() if slow else [])}
                for fd in set(watched) - set(current):
                    poller.unregister(fd)
                for fd in set(current) - set(watched):
                    poller.register(fd, select.POLLIN)
                watched = current
                try:
                    for fd, _events in poller.poll(100):
                        if fd == ring_fd:
                            ring.consume()
                        elif fd in watched and slow is not None:
                            slow.drain(watched[fd])
                except OSError as exc:
                    log.warning("miss ring buffer: %s", exc)
                    return

        self._thread = threading.Thread(target=run, name="lispnet-ebpf-misses", daemon=True)
        self._thread.start()

    def _stop_reader(self) -> None:
        self._stopping.set()
        if self._loop is not None and self._reader_fd is not None:
            try:
                self._loop.remove_reader(self._reader_fd)
            except (RuntimeError, ValueError):
                pass
        self._reader_fd = None
        self._loop = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._ring is not None:
            self._ring.free()
            self._ring = None


def _with_ipr(fn: Any, *args: Any) -> Any:
    """Call ``fn(ipr, *args)`` with a fresh IPRoute (on a netlink thread)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return fn(ipr, *args)


def socket_ifindex(name: str) -> int:
    """Interface index of ``name`` in the calling thread's namespace."""
    return socket.if_nametoindex(name)


def supported() -> tuple[bool, str]:
    """Whether this node can run the eBPF data plane, and why not."""
    if os.geteuid() != 0:
        return False, "needs root (CAP_BPF and CAP_NET_ADMIN)"
    if not libbpf.available():
        return False, "libbpf.so.1 not found (install libbpf1)"
    if not OBJECT_PATH.exists():
        return False, f"{OBJECT_PATH.name} not built (run python -m lispnet.dataplane.bpf_build)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        log.debug("no kernel BTF; the object does not need it")
    return True, ""


__all__ = ["EbpfDataplane", "COUNTERS", "encode_entry", "decode_entry", "lpm_key", "supported"]
