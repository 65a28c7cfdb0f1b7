"""The eBPF data plane's map layouts: ``lisp.bpf.c``'s structs and constants on the Python side.

Keys and values are packed here exactly as the C structs lay them out (native byte order,
explicit padding); :mod:`.ebpf` writes and reads the maps with them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from .base import FwdEntry, FwdLocator, IPAddr, Miss

MAX_RLOCS = 8
TC_HANDLE = 0x4C15
ENCAP_PRIORITY = 0x4C
DECAP_PRIORITY = 0x4D

ACT_ENCAP = 0
ACT_NATIVE = 1
ACT_MAP_REQUEST = 2
ACT_DROP = 3

CFG_MISS_PASS = 1
CFG_LSB_VALID = 2

TABLE_BASE = 0x4D00
"""First routing table of the instances on plain (non-VRF) interfaces."""
RTPROT_LISPNET = 76
MISS_COPY = 1536

#: Counter names in the order of the C enum (``C_ENCAPSULATED`` ...).
COUNTERS: tuple[str, ...] = (
    "encapsulated",
    "decapsulated",
    "misses",
    "miss_events",
    "native_forwarded",
    "ttl_expired",
    "local",
    "encap_bytes",
    "decap_bytes",
    "drop_negative",
    "drop_no_rloc",
    "drop_no_source",
    "drop_fib",
    "drop_adjust",
    "drop_unknown_iid",
    "drop_bad_inner",
    "drop_miss",
    "gso_batches",
    "drop_gso",
    "too_big",
    "drop_too_big",
    "drop_ecn_not_ect",
)

_ENTRY_HEAD = struct.Struct("=BBHI")
_RLOC = struct.Struct("=BBBB16s")
_CONFIG = struct.Struct("=IIIBB2x4s16sII6s2x")
_U32 = struct.Struct("=I")
_PAIR = struct.Struct("=II")
_RLOC_KEY = struct.Struct("=B3x16s")
_MISS_EVENT = struct.Struct(f"=IBBHHH16s16s{MISS_COPY}s")
EV_MISS, EV_TOO_BIG = 0, 1
_RLOC_STAT_KEY = struct.Struct("=BB2x16s")
_RLOC_STAT = struct.Struct("=QQ")
_RLOC_RECENT = struct.Struct("=20s4xQQ")
"""struct rloc_recent: a per-CPU, per-direction key with counts not yet in rloc_stats."""
ENTRY_SIZE = _ENTRY_HEAD.size + MAX_RLOCS * _RLOC.size


# --- map encodings (the C layouts in lisp.bpf.c) -------------------------------------------
def lpm_key(prefix: EidPrefix) -> bytes:
    """The LPM-trie key: prefixlen (32 for the iid + mask-len), iid (big-endian), address."""
    addr = prefix.masked().address
    if not isinstance(addr, IPv4Address | IPv6Address):
        raise ValueError(f"the eBPF data plane carries IPv4/IPv6 EIDs only, not {prefix}")
    return _U32.pack(32 + prefix.mask_len) + (prefix.iid & 0xFFFFFFFF).to_bytes(4, "big") + addr.packed


def _usable_first(locators: Sequence[FwdLocator]) -> list[FwdLocator]:
    """At most MAX_RLOCS locators, keeping the ones the ITR could use first."""
    if len(locators) <= MAX_RLOCS:
        return list(locators)
    ranked = sorted(locators, key=lambda r: (not r.up or r.priority >= 255, r.priority))
    return ranked[:MAX_RLOCS]


def entry_action(entry: FwdEntry) -> int:
    """The program's action for an entry."""
    if entry.locators:
        return ACT_ENCAP
    if entry.action == Action.NATIVELY_FORWARD:
        return ACT_NATIVE
    if entry.action == Action.SEND_MAP_REQUEST:
        return ACT_MAP_REQUEST
    return ACT_DROP


def encode_entry(entry: FwdEntry) -> bytes:
    """The ``struct fwd_entry`` value for a map-cache entry."""
    locs = _usable_first(entry.locators)
    out = bytearray(_ENTRY_HEAD.pack(entry_action(entry), len(locs), 1 if entry.use_petr else 0, 0))
    for loc in locs:
        family = 4 if isinstance(loc.address, IPv4Address) else 6
        out += _RLOC.pack(
            family,
            max(0, min(loc.priority, 255)),
            max(0, min(loc.weight, 255)),
            1 if loc.up else 0,
            loc.address.packed.ljust(16, b"\0"),
        )
    out += bytes(ENTRY_SIZE - len(out))
    return bytes(out)


def decode_entry(value: bytes) -> tuple[int, list[tuple[IPAddr, int, int, bool]]]:
    """(action, [(rloc, priority, weight, up)]) from a ``struct fwd_entry`` (for tests/show)."""
    action, n, _flags, _ = _ENTRY_HEAD.unpack_from(value)
    rlocs: list[tuple[IPAddr, int, int, bool]] = []
    for i in range(min(n, MAX_RLOCS)):
        fam, prio, weight, up, raw = _RLOC.unpack_from(value, _ENTRY_HEAD.size + i * _RLOC.size)
        addr: IPAddr = IPv4Address(raw[:4]) if fam == 4 else IPv6Address(raw)
        rlocs.append((addr, prio, weight, bool(up)))
    return action, rlocs


def rloc_key(addr: IPAddr) -> bytes:
    return _RLOC_KEY.pack(4 if isinstance(addr, IPv4Address) else 6, addr.packed.ljust(16, b"\0"))


def parse_miss_event(data: bytes) -> Miss:
    """A ring-buffer record as a Miss; the packet is empty unless it was copied whole."""
    iid, family, _kind, length, _mtu, _gso, src, dst, pkt = _MISS_EVENT.unpack_from(data)
    pkt = pkt[:length]
    if len(pkt) >= 20 and pkt[0] >> 4 == 4:
        whole = int.from_bytes(pkt[2:4], "big")
    elif len(pkt) >= 40 and pkt[0] >> 4 == 6:
        whole = 40 + int.from_bytes(pkt[4:6], "big")
    else:
        whole = -1
    if whole != len(pkt):
        pkt = b""  # truncated: the ITR must not queue (and later send) half a packet
    if family == 4:
        return Miss(iid, IPv4Address(src[:4]), IPv4Address(dst[:4]), pkt)
    return Miss(iid, IPv6Address(src), IPv6Address(dst), pkt)
