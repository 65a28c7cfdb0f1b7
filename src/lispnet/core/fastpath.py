"""Allocation-light readers for the mapping system's two hot messages.

The full codec (``wire.control``) builds a frozen value for every header, address and
record; that is right for everything we must understand completely, but a Map-Server
answering 100 k Map-Requests per second cannot afford it for each one.  The common
request has a fixed shape - an ECM with a 20-byte IPv4 (or 40-byte IPv6) inner header
and UDP, then a Map-Request with plain flags, IP ITR-RLOCs and one IPv4/IPv6 EID record,
maybe inside an Instance-ID LCAF - and everything needed to answer it sits at computable
offsets.  :func:`peek_map_request` reads exactly that shape straight from the bytes,
checking every length against the datagram, and returns ``None`` for anything else so
the caller falls back to the full decoder (which also produces the typed
``DecodeError`` for garbage).  It never raises on any input: every read is bounds
checked first.

Only facts the Map-Server needs are extracted: the nonce, the EID as (iid, afi, integer,
mask-len), the ITR-RLOCs as (version, packed bytes) and the port the reply goes to.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..wire.errors import DecodeError

if TYPE_CHECKING:
    from .engine import Endpoint
    from .mapsys import Counters

AFI_IPV4 = 1
AFI_IPV6 = 2
AFI_LCAF = 16387
LCAF_IID = 2

# Map-Request first-word bits that send a request to the slow path: A, M (map-reply
# record), P (probe), S (SMR), I (xTR-ID), D (dont-map-reply).
_MREQ_SLOW = 0x08000000 | 0x04000000 | 0x02000000 | 0x01000000 | 0x00100000 | 0x00002000


class PeekedRequest(NamedTuple):
    """What the fast path read from a Map-Request."""

    nonce: int
    """The request's nonce."""
    iid: int
    """Instance-id of the EID (0 without an Instance-ID LCAF)."""
    afi: int
    """1 (IPv4) or 2 (IPv6)."""
    eid: int
    """The EID address as an integer."""
    mask_len: int
    """The record's mask-len."""
    itr_rlocs: tuple[tuple[int, bytes], ...]
    """(IP version, packed address) of each IP ITR-RLOC, in order."""
    reply_port: int
    """Inner UDP source port (ECM), else the caller's source port (0 here)."""


def _skip_address(data: bytes, pos: int, end: int) -> int:
    """Position after the AFI-encoded address at ``pos`` (-1 if it does not fit or is unknown)."""
    if pos + 2 > end:
        return -1
    afi = (data[pos] << 8) | data[pos + 1]
    pos += 2
    if afi == 0:
        return pos
    if afi == AFI_IPV4:
        pos += 4
    elif afi == AFI_IPV6:
        pos += 16
    elif afi == AFI_LCAF:
        if pos + 6 > end:
            return -1
        pos += 6 + ((data[pos + 4] << 8) | data[pos + 5])
    else:
        return -1
    return pos if pos <= end else -1


def peek_map_request(data: bytes, ecm: bool) -> PeekedRequest | None:
    """Read a common-shape (ECM-encapsulated when ``ecm``) Map-Request, or None."""
    end = len(data)
    port = 0
    o = 0
    if ecm:
        # ECM header: only S = 0 has a fixed size.
        if end < 4 + 20 + 8 + 12 or data[0] & 0x08:
            return None
        v = data[4] >> 4
        if end == 60 and data[4] == 0x45:
            # the most common request whole: no source EID, one IPv4 ITR-RLOC, an IPv4 EID
            (total, proto, sport, ulen, first, nonce, src_afi, itr_afi, itr, mask_len, eid_afi,
             eid) = _ECM4_SIMPLE.unpack_from(data)
            if (proto == 17 and total == 56 and ulen == 36 and first >> 28 == 1 and not first & _MREQ_SLOW
                    and first & 0x1FFF == 1 and src_afi == 0 and itr_afi == AFI_IPV4 and eid_afi == AFI_IPV4
                    and mask_len <= 32):
                return _new(PeekedRequest, (nonce, 0, AFI_IPV4, eid, mask_len, ((4, itr),), sport))
        if data[4] == 0x45:
            # the common shape, one unpack: IPv4 (no options) + UDP + Map-Request header
            total, proto, sport, ulen, first, nonce = _ECM4.unpack_from(data)
            if proto != 17 or total != end - 4 or ulen != end - 24:
                return None
            if first >> 28 != 1 or first & _MREQ_SLOW or (first & 0xFF) != 1 or end < 44 + 2 + 2 + 4:
                return None
            return _after_header(data, 44, end, first, nonce, sport)
        if v == 4:
            if data[4] != 0x45 or data[13] != 17:  # no options, UDP
                return None
            if (data[6] << 8 | data[7]) != end - 4:
                return None
            u = 24
        elif v == 6:
            if end < 4 + 40 + 8 + 12 or data[10] != 17:  # next header UDP, no extension headers
                return None
            if (data[8] << 8 | data[9]) != end - 44:
                return None
            u = 44
        else:
            return None
        if (data[u + 4] << 8 | data[u + 5]) != end - u:
            return None
        port = (data[u] << 8) | data[u + 1]
        o = u + 8
    if end - o < 12 + 2 + 2 + 4 or data[o] >> 4 != 1:
        return None
    first, nonce = _MREQ.unpack_from(data, o)
    if first & _MREQ_SLOW or (first & 0xFF) != 1:
        return None
    return _after_header(data, o + 12, end, first, nonce, port)


def _after_header(data: bytes, pos: int, end: int, first: int, nonce: int, port: int) -> PeekedRequest | None:
    """The rest of ``peek_map_request`` from the source EID at ``pos`` (at least 8 bytes
    are left)."""
    irc = ((first >> 8) & 0x1F) + 1
    if data[pos] or data[pos + 1]:
        pos = _skip_address(data, pos, end)  # source EID
        if pos < 0:
            return None
    else:
        pos += 2  # no source EID (AFI 0)
    rlocs: list[tuple[int, bytes]] = []
    for _ in range(irc):
        if pos + 2 > end:
            return None
        afi = (data[pos] << 8) | data[pos + 1]
        if afi == AFI_IPV4 and pos + 6 <= end:
            rlocs.append((4, data[pos + 2 : pos + 6]))
            pos += 6
        elif afi == AFI_IPV6 and pos + 18 <= end:
            rlocs.append((6, data[pos + 2 : pos + 18]))
            pos += 18
        else:
            pos = _skip_address(data, pos, end)
            if pos < 0:
                return None
    # the one EID record: reserved(1) mask-len(1) AFI ...
    if pos + 4 > end:
        return None
    mask_len = data[pos + 1]
    afi = (data[pos + 2] << 8) | data[pos + 3]
    pos += 4
    iid = 0
    if afi == AFI_LCAF:
        # Instance-ID LCAF: rsvd1 flags type rsvd2 length(2) iid(4) AFI address
        if pos + 12 > end or data[pos + 2] != LCAF_IID:
            return None
        length = (data[pos + 4] << 8) | data[pos + 5]
        iid = int.from_bytes(data[pos + 6 : pos + 10], "big")
        afi = (data[pos + 10] << 8) | data[pos + 11]
        inner = 4 if afi == AFI_IPV4 else 16 if afi == AFI_IPV6 else -1
        if inner < 0 or length != 4 + 2 + inner:
            return None
        pos += 12
    if afi == AFI_IPV4:
        if pos + 4 != end or mask_len > 32:
            return None
    elif afi == AFI_IPV6:
        if pos + 16 != end or mask_len > 128:
            return None
    else:
        return None
    eid = int.from_bytes(data[pos:end], "big")
    return _new(PeekedRequest, (nonce, iid, afi, eid, mask_len, tuple(rlocs), port))


_new = tuple.__new__
_MREQ = struct.Struct("!IQ")
"""Map-Request first word and nonce."""
_ECM4 = struct.Struct("!6xH5xB10xH2xH2xIQ")
"""ECM + IPv4 + UDP + Map-Request header: total length, protocol, source port, UDP length,
first word, nonce."""
_ECM4_SIMPLE = struct.Struct("!6xH5xB10xH2xH2xIQHH4sxBHI")
"""The 60-byte request: as ``_ECM4``, then source-EID AFI, ITR-RLOC AFI and address, the
record's mask-len, AFI and EID."""


__all__ = ["PeekedRequest", "peek_map_request"]


class FastReplier(Protocol):
    """What answers a peeked request at once (the Map-Server)."""

    def fast_reply(
        self, p: PeekedRequest, want: int, reply_port: int, raw_ecm: bytes | None
    ) -> tuple[bytes, str, int] | None: ...


def answer_now_or_slow(
    ms: FastReplier,
    counters: Counters,
    datagram: bytes,
    ecm: bool,
    src: Endpoint,
    dst: Endpoint,
    now: float,
    slow: Callable[[bytes, Endpoint, Endpoint, float], None],
    handed: str | None,
) -> tuple[bytes, str, int] | None:
    """The shared tail of the engines' ``receive_fast`` (after counting and rate limiting):
    answer a common-shape request at once, else run ``slow`` (the full decoder), counting
    its decode errors.  ``handed`` names the request outcome to count when answered."""
    peek = peek_map_request(datagram, ecm)
    if peek is not None:
        port = peek.reply_port if ecm else src.port
        out = ms.fast_reply(peek, dst.address.version, port, datagram if ecm else None)
        if out is not None:
            if handed is not None:
                counters.requests[handed] += 1
            return out
    try:
        slow(datagram, src, dst, now)
    except DecodeError as e:
        counters.decode_errors[e.reason] += 1
    return None
