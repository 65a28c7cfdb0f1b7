"""Longest-prefix-match table keyed by :class:`EidPrefix`, one family per (iid, afi).

Why this shape
--------------
The Map-Server answers three questions on its hot paths (STYLE.md section 1):

* exact match       - "is this prefix registered / configured?"
* longest match     - "which registration covers this EID?"
* least-specific uncovered prefix - for negative Map-Replies (``negative.py``)

and one on its cold path (the REST API): "what lies inside this prefix?".

Each fixed-width family (IPv4, IPv6, MAC, E.164) keeps two indexes over the same set:

1. a dict per mask length ``{mask_len: {net_id: value}}`` where ``net_id`` is the
   address shifted right by ``bits - mask_len``, plus the present lengths sorted
   longest first.  Exact match is one dict probe; longest match probes each present
   length once - O(#lengths), independent of the number of entries.  Values live here.
2. a sorted sequence of ``(address << 8) | mask_len`` integers (:class:`SortedInts`, a
   list of bounded sorted blocks), giving in-order iteration, range queries for
   "covered by" and the sorted neighbours of an address that ``negative.py`` needs.

Memory is two small ints and two container slots per entry (about 130 bytes with the
value reference on CPython), which keeps a million prefixes in a couple of hundred MB.

Addresses without a fixed bit width (distinguished names, LCAFs other than the
instance-id, AFI 0) are stored in an exact-match-only family: their longest match is
their exact match.

MAC EIDs travel with AFI 6 (lispers.net) or 16389 (IANA); both land in one family (the
family key normalises the AFI), so a MAC registered with one AFI is found with the other.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

from ..wire.address import Address, E164Address, MacAddress, address_to_int
from ..wire.enums import Afi
from ..wire.prefix import EidPrefix, address_from_int

V = TypeVar("V")

FamilyKey = tuple[int, int]
"""(instance-id, normalised AFI)."""


def address_width(addr: Address) -> int:
    """Bit width of ``addr`` if it belongs to a fixed-width family, else 0."""
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    if isinstance(addr, MacAddress):
        return 48
    if isinstance(addr, E164Address):
        return 60
    return 0


def family_key(prefix: EidPrefix) -> FamilyKey:
    """The table family of ``prefix``: (iid, afi) with both MAC AFIs folded into 16389."""
    afi = prefix.afi
    if afi == Afi.MAC_LISPERS:
        afi = Afi.MAC
    return (prefix.iid, afi)


class SortedInts:
    """A sorted set of ints stored as a list of sorted blocks (each at most 2 * LOAD long).

    Insert and remove cost a bisect over the block maxima plus a memmove inside one block,
    so building a million-entry set stays O(n log n) instead of the O(n^2) of one list.
    """

    __slots__ = ("_blocks", "_maxes", "_len")
    LOAD = 256

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []
        self._maxes: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        for blk in self._blocks:
            yield from blk

    def __contains__(self, x: int) -> bool:
        i = bisect_left(self._maxes, x)
        if i == len(self._maxes):
            return False
        blk = self._blocks[i]
        j = bisect_left(blk, x)
        return j < len(blk) and blk[j] == x

    def add(self, x: int) -> bool:
        """Insert ``x``; False if it was already present."""
        maxes = self._maxes
        if not maxes:
            self._blocks.append([x])
            maxes.append(x)
            self._len = 1
            return True
        i = bisect_left(maxes, x)
        if i == len(maxes):
            i -= 1
        blk = self._blocks[i]
        j = bisect_left(blk, x)
        if j < len(blk) and blk[j] == x:
            return False
        blk.insert(j, x)
        maxes[i] = blk[-1]
        self._len += 1
        if len(blk) > 2 * self.LOAD:
            half = len(blk) // 2
            self._blocks.insert(i + 1, blk[half:])
            del blk[half:]
            maxes[i] = blk[-1]
            maxes.insert(i + 1, self._blocks[i + 1][-1])
        return True

    def discard(self, x: int) -> bool:
        """Remove ``x``; False if it was absent."""
        maxes = self._maxes
        i = bisect_left(maxes, x)
        if i == len(maxes):
            return False
        blk = self._blocks[i]
        j = bisect_left(blk, x)
        if j == len(blk) or blk[j] != x:
            return False
        del blk[j]
        self._len -= 1
        if blk:
            maxes[i] = blk[-1]
        else:
            del self._blocks[i]
            del maxes[i]
        return True

    def irange(self, lo: int, hi: int) -> Iterator[int]:
        """Members ``lo <= x <= hi`` in ascending order."""
        maxes = self._maxes
        i = bisect_left(maxes, lo)
        first = True
        while i < len(maxes):
            blk = self._blocks[i]
            j = bisect_left(blk, lo) if first else 0
            first = False
            while j < len(blk):
                x = blk[j]
                if x > hi:
                    return
                yield x
                j += 1
            i += 1

    def descending_le(self, x: int) -> Iterator[int]:
        """Members ``<= x`` from the largest down."""
        maxes = self._maxes
        i = bisect_left(maxes, x)
        if i == len(maxes):
            i -= 1
            j = len(self._blocks[i]) - 1 if i >= 0 else -1
        else:
            j = bisect_right(self._blocks[i], x) - 1
        while i >= 0:
            blk = self._blocks[i]
            while j >= 0:
                yield blk[j]
                j -= 1
            i -= 1
            if i >= 0:
                j = len(self._blocks[i]) - 1

    def first_gt(self, x: int) -> int | None:
        """The smallest member ``> x``, or None."""
        maxes = self._maxes
        i = bisect_right(maxes, x)
        if i == len(maxes):
            return None
        blk = self._blocks[i]
        return blk[bisect_right(blk, x)]


class BitFamily(Generic[V]):
    """All prefixes of one fixed-width family: see the module docstring for the layout."""

    __slots__ = ("bits", "template", "by_len", "lengths", "index", "iid")

    def __init__(self, iid: int, bits: int, template: Address) -> None:
        self.iid = iid
        self.bits = bits
        """Address width (32, 128, 48, 60)."""
        self.template = template
        """An address of the family, used to rebuild prefixes from integers."""
        self.by_len: dict[int, dict[int, V]] = {}
        """mask_len -> {address >> (bits - mask_len): value}."""
        self.lengths: list[int] = []
        """Present mask lengths, longest first."""
        self.index = SortedInts()
        """(masked address << 8) | mask_len for every entry, sorted."""

    def __len__(self) -> int:
        return len(self.index)

    def make_prefix(self, net: int, mask_len: int) -> EidPrefix:
        return EidPrefix(self.iid, address_from_int(self.template, net << (self.bits - mask_len)), mask_len)

    def insert(self, value_int: int, mask_len: int, value: V) -> tuple[bool, V | None]:
        """(new, old value)."""
        shift = self.bits - mask_len
        net = value_int >> shift
        d = self.by_len.get(mask_len)
        if d is None:
            d = self.by_len[mask_len] = {}
            insort(self.lengths, -mask_len)
        old = d.get(net)
        new = old is None and net not in d
        d[net] = value
        if new:
            self.index.add(((net << shift) << 8) | mask_len)
        return new, old

    def delete(self, value_int: int, mask_len: int) -> tuple[bool, V | None]:
        d = self.by_len.get(mask_len)
        if d is None:
            return False, None
        shift = self.bits - mask_len
        net = value_int >> shift
        if net not in d:
            return False, None
        old = d.pop(net)
        self.index.discard(((net << shift) << 8) | mask_len)
        if not d:
            del self.by_len[mask_len]
            self.lengths.remove(-mask_len)
        return True, old

    def longest(self, value_int: int, max_len: int) -> tuple[int, int, V] | None:
        """(net, mask_len, value) of the longest entry of length <= max_len covering value_int."""
        bits = self.bits
        by_len = self.by_len
        for neg in self.lengths:
            mask_len = -neg
            if mask_len > max_len:
                continue
            net = value_int >> (bits - mask_len)
            d = by_len[mask_len]
            if net in d:
                return net, mask_len, d[net]
        return None


class ExactFamily(Generic[V]):
    """Prefixes of an address kind with no bit arithmetic: exact match only."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[tuple[Address, int], tuple[EidPrefix, V]] = {}

    def __len__(self) -> int:
        return len(self.entries)


class LpmTable(Generic[V]):
    """A prefix -> value map with exact, longest, covering and covered-by queries.

    ``generation`` increases whenever a prefix is added or removed (not when only the
    value of an existing prefix changes), so callers can cache derived answers such as
    negative prefixes.
    """

    __slots__ = ("_bit", "_exact", "_len", "generation")

    def __init__(self) -> None:
        self._bit: dict[FamilyKey, BitFamily[V]] = {}
        self._exact: dict[FamilyKey, ExactFamily[V]] = {}
        self._len = 0
        self.generation = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, prefix: object) -> bool:
        return isinstance(prefix, EidPrefix) and self.exact(prefix) is not None

    def __iter__(self) -> Iterator[tuple[EidPrefix, V]]:
        return self.items()

    # --- families -------------------------------------------------------------------
    def bit_family(self, iid: int, afi: int) -> BitFamily[V] | None:
        """The fixed-width family for (iid, afi), if it holds anything (for negative.py)."""
        if afi == Afi.MAC_LISPERS:
            afi = Afi.MAC
        return self._bit.get((iid, afi))

    def families(self) -> list[FamilyKey]:
        return sorted(set(self._bit) | set(self._exact))

    # --- updates ----------------------------------------------------------------------
    def insert(self, prefix: EidPrefix, value: V) -> V | None:
        """Set the value for ``prefix`` (host bits ignored); returns the previous value."""
        bits = address_width(prefix.address)
        key = family_key(prefix)
        if bits:
            fam = self._bit.get(key)
            if fam is None:
                fam = self._bit[key] = BitFamily(prefix.iid, bits, prefix.address)
            new, old = fam.insert(address_to_int(prefix.address), prefix.mask_len, value)
        else:
            efam = self._exact.get(key)
            if efam is None:
                efam = self._exact[key] = ExactFamily()
            ekey = (prefix.address, prefix.mask_len)
            prev = efam.entries.get(ekey)
            new = prev is None
            old = None if prev is None else prev[1]
            efam.entries[ekey] = (prefix, value)
        if new:
            self._len += 1
            self.generation += 1
        return old

    def delete(self, prefix: EidPrefix) -> V | None:
        """Remove ``prefix``; returns its value or None if it was absent."""
        key = family_key(prefix)
        fam = self._bit.get(key)
        if fam is not None:
            if prefix.mask_len > fam.bits:
                return None
            found, old = fam.delete(address_to_int(prefix.address), prefix.mask_len)
            if found and not len(fam):
                del self._bit[key]
        else:
            efam = self._exact.get(key)
            if efam is None:
                return None
            prev = efam.entries.pop((prefix.address, prefix.mask_len), None)
            found = prev is not None
            old = None if prev is None else prev[1]
            if found and not efam.entries:
                del self._exact[key]
        if found:
            self._len -= 1
            self.generation += 1
        return old

    def clear(self) -> None:
        self._bit.clear()
        self._exact.clear()
        self._len = 0
        self.generation += 1

    # --- queries ----------------------------------------------------------------------
    def exact(self, prefix: EidPrefix) -> V | None:
        """The value stored for exactly ``prefix`` (host bits ignored)."""
        fam = self._bit.get(family_key(prefix))
        if fam is not None:
            d = fam.by_len.get(prefix.mask_len)
            if d is None:
                return None
            return d.get(address_to_int(prefix.address) >> (fam.bits - prefix.mask_len))
        efam = self._exact.get(family_key(prefix))
        if efam is None:
            return None
        hit = efam.entries.get((prefix.address, prefix.mask_len))
        return None if hit is None else hit[1]

    def longest_match(self, prefix: EidPrefix) -> tuple[EidPrefix, V] | None:
        """The most specific stored prefix that contains ``prefix`` (or equals it)."""
        fam = self._bit.get(family_key(prefix))
        if fam is not None:
            hit = fam.longest(address_to_int(prefix.address), prefix.mask_len)
            if hit is None:
                return None
            net, mask_len, value = hit
            return fam.make_prefix(net, mask_len), value
        efam = self._exact.get(family_key(prefix))
        if efam is None:
            return None
        return efam.entries.get((prefix.address, prefix.mask_len))

    def lookup(self, prefix: EidPrefix) -> V | None:
        """Longest-match value only (no prefix object built): the hot-path query."""
        fam = self._bit.get(family_key(prefix))
        if fam is not None:
            hit = fam.longest(address_to_int(prefix.address), prefix.mask_len)
            return None if hit is None else hit[2]
        efam = self._exact.get(family_key(prefix))
        if efam is None:
            return None
        e = efam.entries.get((prefix.address, prefix.mask_len))
        return None if e is None else e[1]

    def lookup_int(self, iid: int, afi: int, value: int, mask_len: int) -> V | None:
        """:meth:`lookup` for an address already given as an integer (no objects built)."""
        fam = self._bit.get((iid, afi))
        if fam is None:
            return None
        hit = fam.longest(value, mask_len)
        return None if hit is None else hit[2]

    def covering(self, prefix: EidPrefix) -> Iterator[tuple[EidPrefix, V]]:
        """Every stored prefix that contains ``prefix``, most specific first."""
        fam = self._bit.get(family_key(prefix))
        if fam is not None:
            v = address_to_int(prefix.address)
            for neg in fam.lengths:
                mask_len = -neg
                if mask_len > prefix.mask_len:
                    continue
                net = v >> (fam.bits - mask_len)
                d = fam.by_len[mask_len]
                if net in d:
                    yield fam.make_prefix(net, mask_len), d[net]
            return
        hit = self.longest_match(prefix)
        if hit is not None:
            yield hit

    def covered_by(self, prefix: EidPrefix) -> Iterator[tuple[EidPrefix, V]]:
        """Every stored prefix inside ``prefix`` (itself included), in address order."""
        fam = self._bit.get(family_key(prefix))
        if fam is not None:
            if prefix.mask_len > fam.bits:
                return
            shift = fam.bits - prefix.mask_len
            base = (address_to_int(prefix.address) >> shift) << shift
            lo = (base << 8) | prefix.mask_len
            hi = ((base | ((1 << shift) - 1)) << 8) | 0xFF
            for code in list(fam.index.irange(lo, hi)):
                mask_len = code & 0xFF
                if mask_len < prefix.mask_len:
                    continue
                net = (code >> 8) >> (fam.bits - mask_len)
                yield fam.make_prefix(net, mask_len), fam.by_len[mask_len][net]
            return
        hit = self.longest_match(prefix)
        if hit is not None:
            yield hit

    def items(self, iid: int | None = None, afi: int | None = None) -> Iterator[tuple[EidPrefix, V]]:
        """All entries (optionally of one iid and/or AFI), sorted by family then address."""
        if afi == Afi.MAC_LISPERS:
            afi = Afi.MAC
        for key in self.families():
            if (iid is not None and key[0] != iid) or (afi is not None and key[1] != afi):
                continue
            fam = self._bit.get(key)
            if fam is not None:
                for code in list(fam.index):
                    mask_len = code & 0xFF
                    net = (code >> 8) >> (fam.bits - mask_len)
                    yield fam.make_prefix(net, mask_len), fam.by_len[mask_len][net]
            else:
                yield from sorted(self._exact[key].entries.values(), key=lambda e: e[0].sort_key())

    def values(self) -> Iterator[V]:
        for fam in self._bit.values():
            for d in fam.by_len.values():
                yield from d.values()
        for efam in self._exact.values():
            for _, v in efam.entries.values():
                yield v


__all__ = ["LpmTable", "SortedInts", "BitFamily", "address_width", "family_key"]
