"""The shortest non-EID covering prefix for negative Map-Replies (spec 11.4).

A Map-Resolver or Map-Server that finds no mapping for an EID answers with a negative
Map-Reply whose prefix should be as short as possible (so the ITR caches one entry for
a large stretch of non-EID space) while overlapping no configured or registered
EID-prefix of that instance-id and address family, and - when the answer is given on
behalf of an authoritative prefix (a site's configured prefix, a DDT delegation) - no
shorter than that prefix:

    neg_len = max(lower_bound, max over E not containing EID of (lcp(EID, E) + 1))

where ``lcp`` counts the leading bits the EID and E's address agree in.  Prefixes that
contain the EID are the authoritative ones and are left out (they are what the lower
bound stands for).

Computing the inner maximum by scanning every E would make each negative answer
O(#prefixes).  Instead we use a property of sorted bit strings: among keys sorted in
address order, the one with the longest common prefix with a query is one of its two
sorted neighbours.  Left of the EID, ``lcp`` only decreases as the address decreases,
so the first non-containing entry walking left is the best on that side (the entries
skipped are the EID's own covering prefixes, at most one per length); right of the EID
no entry can contain it, so the first one is the best.  ``lpm.SortedInts`` gives both
neighbours in O(log n).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..wire.address import address_to_int
from ..wire.prefix import EidPrefix, address_from_int
from .lpm import LpmTable, address_width, family_key


def _max_lcp_plus_one(table: LpmTable[Any], iid: int, afi: int, q: int, bits: int) -> int:
    """max(lcp(q, E) + 1) over entries E of one table not containing q; 0 if none."""
    fam = table.bit_family(iid, afi)
    if fam is None or fam.bits != bits:
        return 0
    best = 0
    key = (q << 8) | 0xFF
    for code in fam.index.descending_le(key):
        addr = code >> 8
        mask_len = code & 0xFF
        lcp = bits - (addr ^ q).bit_length()
        if lcp < mask_len:  # E does not contain q
            best = lcp + 1
            break
    nxt = fam.index.first_gt(key)
    if nxt is not None:
        lcp = bits - ((nxt >> 8) ^ q).bit_length()
        best = max(best, lcp + 1)
    return best


def negative_prefix(eid: EidPrefix, tables: Iterable[LpmTable[Any]], lower_bound: int = 0) -> EidPrefix:
    """The least-specific prefix around ``eid``'s address overlapping no entry of ``tables``
    that does not contain it, and no shorter than ``lower_bound``.

    Address kinds without bit arithmetic (names, opaque LCAFs) get ``eid`` itself back.
    """
    bits = address_width(eid.address)
    if not bits:
        return eid
    q = address_to_int(eid.address)
    neg_len = lower_bound
    for t in tables:
        neg_len = max(neg_len, _max_lcp_plus_one(t, eid.iid, eid.afi, q, bits))
    neg_len = min(neg_len, bits)
    shift = bits - neg_len
    return EidPrefix(eid.iid, address_from_int(eid.address, (q >> shift) << shift), neg_len)


def negative_prefix_bruteforce(eid: EidPrefix, prefixes: Sequence[EidPrefix], lower_bound: int = 0) -> EidPrefix:
    """The same answer straight from the spec's definition, scanning every prefix (for tests)."""
    bits = address_width(eid.address)
    if not bits:
        return eid
    q = address_to_int(eid.address)
    neg_len = lower_bound
    for e in prefixes:
        if family_key(e) != family_key(eid):
            continue
        a = address_to_int(e.address)
        c = 0  # leading bits in which the EID and E agree, counted one by one
        while c < bits and ((a >> (bits - 1 - c)) & 1) == ((q >> (bits - 1 - c)) & 1):
            c += 1
        if c < e.mask_len:  # E does not contain the EID
            neg_len = max(neg_len, c + 1)
    neg_len = min(neg_len, bits)
    shift = bits - neg_len
    return EidPrefix(eid.iid, address_from_int(eid.address, (q >> shift) << shift), neg_len)


__all__ = ["negative_prefix", "negative_prefix_bruteforce"]
