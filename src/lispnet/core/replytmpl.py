"""Map-Reply templates for an answering fast path outside the daemon (sans-I/O).

The Map-Server already answers from templates: a proxy Map-Reply is the registration's
``reply_cache`` with the request's nonce spliced in, a negative one the
``NegativeFastCache`` entry of the negative prefix.  This module decides which of
those answers may be handed to a *kernel* fast path (``dataplane/bpf/mapreq.bpf.c``,
driven by ``shell/mapreq_offload.py``), which looks up the requested (instance-id,
EID) in an LPM trie of templates and answers without the daemon.

The kernel has no view of the registration table, so an entry may only be there when
its longest match is the daemon's answer for every EID it covers:

* **learned from the daemon's own answers**: when the daemon answers a request from a
  template, :meth:`OffloadTable.learn` reads the record's EID prefix from the reply
  bytes and returns the entry to insert (template = the sent bytes, nonce zeroed), so
  kernel and daemon send byte-identical replies;
* a **proxy** entry only for a *leaf* registration (no registered prefix inside it):
  otherwise a more-specific registration (maybe forwarded to its ETR) would be shadowed;
* a **negative** entry is the least-specific prefix around the EID that overlaps no
  registered or configured prefix (``db/negative.py``), the same answer for every EID
  inside it, valid as long as the set of registered and configured prefixes is.

Invalidation (:meth:`OffloadTable.changed`), from the Map-Server's change journal
after every receive batch: a changed prefix loses its own entry and every entry that
covers it (a new more-specific registration ends a leaf); a change in the set of
registered prefixes, in the sites or the Map-Server options drops every negative
entry (options: everything).  Between a change and the end of its batch the kernel may
still answer the old way, as any reply racing a registration would.

Kernel layouts (``struct tkey`` / ``struct tval`` in ``mapreq.bpf.c``): key = host-order
u32 prefix length (64 + mask-len), instance-id (4 bytes, big-endian), AFI (1 byte, 3
pad), address (16 bytes); value = u16 length, u8 kind, pad, u32 one's-complement sum of
the template's 16-bit words, the template (nonce 0) padded to :data:`TEMPLATE_MAX`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from ..db.lpm import LpmTable
from ..wire.prefix import EidPrefix

if TYPE_CHECKING:
    from .map_server import MapServer

TEMPLATE_MAX = 256
"""Largest template the kernel program takes (bytes, a multiple of 4)."""
KEY_SIZE = 28
VALUE_SIZE = 8 + TEMPLATE_MAX

KIND_PROXY = 1
KIND_NEGATIVE_UNREGISTERED = 2
KIND_NEGATIVE_NON_EID = 3
KIND_NAMES = {
    KIND_PROXY: "proxy-reply",
    KIND_NEGATIVE_UNREGISTERED: "negative-unregistered",
    KIND_NEGATIVE_NON_EID: "negative-non-eid",
}
"""Kind -> the Map-Server's ``requests`` counter it is counted under."""

_AFI_LCAF = 16387
_LCAF_IID = 2
_VALUE_HEAD = struct.Struct("=HBxI")


@dataclass(frozen=True, slots=True)
class ReplyEid:
    """The EID prefix of a Map-Reply's one record, as the kernel keys it."""

    iid: int
    afi: int
    packed: bytes
    mask_len: int

    def prefix(self) -> EidPrefix:
        addr = IPv4Address(self.packed) if self.afi == 1 else IPv6Address(self.packed)
        return EidPrefix(self.iid, addr, self.mask_len)


def reply_eid(reply: bytes) -> ReplyEid | None:
    """The EID prefix of a one-record Map-Reply (IPv4/IPv6, maybe in an Instance-ID
    LCAF), or None for any other message or shape."""
    n = len(reply)
    if n < 28 or reply[0] >> 4 != 2 or reply[3] != 1:
        return None
    mask_len = reply[17]
    afi = (reply[22] << 8) | reply[23]
    iid = 0
    pos = 24
    if afi == _AFI_LCAF:
        if n < 36 or reply[26] != _LCAF_IID:
            return None
        iid = int.from_bytes(reply[30:34], "big")
        afi = (reply[34] << 8) | reply[35]
        pos = 36
    width = 4 if afi == 1 else 16 if afi == 2 else 0
    if not width or pos + width > n or mask_len > width * 8:
        return None
    return ReplyEid(iid, afi, bytes(reply[pos : pos + width]), mask_len)


def _raw_eid(reply: bytes) -> bytes:
    """Mask-len and AFI-encoded EID of a Map-Reply's first record, as raw bytes (a cheap
    dictionary key; garbage for other shapes, which ``reply_eid`` then refuses)."""
    afi = reply[22:24]
    if afi == b"\x00\x01":
        end = 28
    elif afi == b"\x00\x02":
        end = 40
    else:
        end = 40 if reply[34:36] == b"\x00\x01" else 52
    return reply[17:18] + reply[22:end]


def template_of(reply: bytes) -> bytes:
    """The reply with its nonce zeroed (what the fast paths splice a nonce into)."""
    return reply[:4] + bytes(8) + reply[12:]


def answer_from(template: bytes, nonce: int) -> bytes:
    """What the kernel sends as UDP payload for ``nonce`` (the Map-Server's splice)."""
    return template[:4] + nonce.to_bytes(8, "big") + template[12:]


def word_sum(data: bytes) -> int:
    """One's-complement sum (not folded) of the 16-bit big-endian words of ``data``."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def kernel_key(eid: ReplyEid) -> bytes:
    return (
        struct.pack("=I", 64 + eid.mask_len)
        + eid.iid.to_bytes(4, "big")
        + bytes((eid.afi, 0, 0, 0))
        + eid.packed.ljust(16, b"\0")
    )


def kernel_value(template: bytes, kind: int) -> bytes:
    if len(template) > TEMPLATE_MAX or len(template) % 4:
        raise ValueError(f"template of {len(template)} bytes does not fit the kernel")
    return _VALUE_HEAD.pack(len(template), kind, word_sum(template)) + template.ljust(TEMPLATE_MAX, b"\0")


def eid_of_key(key: bytes) -> ReplyEid:
    """Inverse of :func:`kernel_key` (tests, debugging)."""
    (plen,) = struct.unpack_from("=I", key)
    afi = key[8]
    return ReplyEid(int.from_bytes(key[4:8], "big"), afi, key[12 : 12 + (4 if afi == 1 else 16)], plen - 64)


class OffloadTable:
    """What the kernel's template trie holds for one Map-Server (see the module doc).

    The caller applies what :meth:`learn` and :meth:`changed` return to the kernel map
    (insert / delete by key)."""

    def __init__(self, ms: MapServer, max_entries: int = 1 << 20) -> None:
        self.ms = ms
        self.max_entries = max_entries
        self.entries: LpmTable[tuple[bytes, int, bytes]] = LpmTable()
        """Prefix -> (kernel key, kind, raw record EID bytes) of every entry in the kernel."""
        self._seen: dict[bytes, EidPrefix] = {}
        """Raw record EID bytes of a reply -> prefix in the kernel (cheap presence test)."""
        self._not_leaf: set[EidPrefix] = set()
        self._negatives: set[EidPrefix] = set()
        self._versions = self._current_versions()
        self._config = ms.config
        self.learned = 0
        self.removed = 0
        self.skipped = 0
        """Answers that could not go to the kernel (not a leaf, too large, table full)."""

    def _current_versions(self) -> tuple[int, int]:
        return (self.ms.registrations.version, self.ms._conf_version)

    def __len__(self) -> int:
        return len(self.entries)

    def learn(self, reply: bytes) -> tuple[bytes, bytes] | None:
        """(key, value) to insert for a Map-Reply the daemon just sent from a template,
        or None (already there, not offloadable)."""
        raw = _raw_eid(reply)
        if raw in self._seen:
            return None
        eid = reply_eid(reply)
        if eid is None:
            return None
        if self._current_versions() != self._versions or self.ms.config is not self._config:
            return None  # a change not yet applied with ``changed``: learn after it
        prefix = eid.prefix()
        ms = self.ms
        if ms.registrations.get(prefix) is not None:
            if prefix in self._not_leaf:
                self.skipped += 1
                return None
            inside = ms.registrations.table.covered_by(prefix)
            next(inside, None)
            if next(inside, None) is not None:
                self._not_leaf.add(prefix)
                self.skipped += 1
                return None
            kind = KIND_PROXY
        elif ms.configured.longest_match(prefix) is not None:
            kind = KIND_NEGATIVE_UNREGISTERED
        else:
            kind = KIND_NEGATIVE_NON_EID
        template = template_of(reply)
        if len(template) > TEMPLATE_MAX or len(template) % 4 or len(self.entries) >= self.max_entries:
            self.skipped += 1
            return None
        key = kernel_key(eid)
        self.entries.insert(prefix, (key, kind, raw))
        self._seen[raw] = prefix
        if kind != KIND_PROXY:
            self._negatives.add(prefix)
        self.learned += 1
        return key, kernel_value(template, kind)

    def changed(self, prefixes: list[EidPrefix]) -> list[bytes]:
        """Kernel keys to delete after the registrations of ``prefixes`` changed (and
        after any site or option change, noticed here by version)."""
        out: list[bytes] = []
        versions = self._current_versions()
        if self.ms.config is not self._config:
            self._config = self.ms.config
            self._versions = versions
            out = [v[0] for _, v in self.entries.items()]
            self._drop_all()
            return out
        for q in prefixes:
            for p, v in list(self.entries.covering(q)):
                out.append(v[0])
                self._drop(p)
        if versions != self._versions:
            self._versions = versions
            self._not_leaf.clear()
            for p in list(self._negatives):
                hit = self.entries.exact(p)
                if hit is not None:
                    out.append(hit[0])
                    self._drop(p)
            self._negatives.clear()
        return out

    def _drop(self, p: EidPrefix) -> None:
        v = self.entries.delete(p)
        if v is not None:
            self._seen.pop(v[2], None)
            self.removed += 1
        self._negatives.discard(p)

    def _drop_all(self) -> None:
        self.removed += len(self.entries)
        self.entries = LpmTable()
        self._seen.clear()
        self._negatives.clear()
        self._not_leaf.clear()

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self.entries),
            "negative-entries": len(self._negatives),
            "learned": self.learned,
            "removed": self.removed,
            "not-offloaded": self.skipped,
        }


__all__ = [
    "KIND_NAMES",
    "KIND_NEGATIVE_NON_EID",
    "KIND_NEGATIVE_UNREGISTERED",
    "KIND_PROXY",
    "KEY_SIZE",
    "TEMPLATE_MAX",
    "VALUE_SIZE",
    "OffloadTable",
    "ReplyEid",
    "answer_from",
    "eid_of_key",
    "kernel_key",
    "kernel_value",
    "reply_eid",
    "template_of",
    "word_sum",
]
