"""Map-Register fast path: read the common Map-Register shapes straight from the bytes.

The general decoder (``wire.control.parse_control``) builds and validates a frozen value
per message, record, locator and address: about 40 us for a one-record Map-Register,
more than everything else a Map-Server does with it.  A Map-Server with a million
registered EIDs receives about 17 k Map-Registers a second, nearly all of them the
60-second refresh of a registration it already holds, byte for byte the same except
for the nonce and the authentication data.

:func:`parse_register` reads the fields the Map-Server needs at their offsets, for the
shapes real ETRs send: IPv4/IPv6 EIDs (bare or inside an Instance-ID LCAF), any number
of records, locators of AFI 1, 2 or an LCAF, with or without the xTR-ID/site-ID
trailer.  It returns None for anything else - or for anything the general decoder would
refuse - and the caller falls back to the general decoder, which then counts the
error.  The promise (tested against the decoder with Hypothesis) is: when it returns a
value, ``parse_control`` accepts the datagram and agrees on every field.

Each record carries a **signature** (:func:`record_sig`): the message flags (bytes
0-2), Key ID, Algorithm ID and Auth Data Length, the record up to its EID address, the
record after it (the locators), and the xTR-ID/site-ID trailer - everything a
registration stores except the EID address, which the table already keys it by.  An
installed registration keeps the signature it was registered with (one shared object
per distinct signature, see :class:`Interner`), so an identical refresh is recognised by
one bytes comparison.  For a one-record Map-Register the signature is simply
``data[0:3] + data[12:16] + data[record:eid] + data[eid_end:]``, which
:func:`quick_sig` computes without walking the locators: when it equals a
signature taken from a message the full parse accepted, the message has the same
structure, only another nonce and authentication data.

Locator sections are decoded once per distinct byte string by the general decoder
(:class:`LocatorCache`): a million EIDs behind a few thousand ETRs share a few
thousand locator tuples.

HMAC-SHA-1/SHA-256 use precomputed inner and outer pad states per key
(:func:`hmac_digest`): a copy and an update instead of ``hmac.new`` keying the hash
twice per message (about 0.8 us instead of 3-4 us here).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from ..wire.buffer import Reader
from ..wire.enums import Action, AuthAlg
from ..wire.errors import DecodeError
from ..wire.records import LocatorRecord

# first word of a Map-Register (RFC 9301 section 5.6)
_TYPE_REGISTER = 3
_I_BYTE0 = 0x02  # I bit (0x02000000) in byte 0
_ENCRYPTED_BYTE2 = 0x20  # lispers.net "e" (0x00002000): not for us
M_BYTE2 = 0x01  # M bit (0x00000100) in byte 2
T_BYTE2 = 0x08  # T bit (0x00000800)

_AFI_IPV4 = 1
_AFI_IPV6 = 2
_AFI_LCAF = 16387
_LCAF_IID = 2
_ADDR_LEN = {_AFI_IPV4: 4, _AFI_IPV6: 16}
_WIDTH = {_AFI_IPV4: 32, _AFI_IPV6: 128}

_AUTH_LENGTHS: dict[int, tuple[int, int]] = {AuthAlg.HMAC_SHA_1_96: (12, 20), AuthAlg.HMAC_SHA_256_128: (16, 32)}
"""Auth Data Length range the decoder accepts per algorithm we can verify."""

_REC_HEAD = struct.Struct(">IBBHHH")
"""Record TTL, locator count, EID mask-len, ACT/A/reserved, reserved/map-version, EID AFI."""

ACTIONS = tuple(Action(a) for a in range(8))
"""``Action`` of each 3-bit ACT value (what the decoder builds)."""


class RecordView(NamedTuple):
    """One EID-record of a Map-Register as read from the bytes."""

    iid: int
    afi: int
    """1 (IPv4) or 2 (IPv6): the EID family."""
    addr: int
    """The EID address as an integer (host bits as sent)."""
    mask_len: int
    ttl: int
    """Record TTL in minutes."""
    action: int
    """ACT (3 bits)."""
    map_version: int
    locators: bytes
    """The locator section, as sent."""
    loc_count: int
    sig: bytes
    """Flags, keys, record head and locators, trailer: all but the EID and the nonce."""


class ParsedRegister(NamedTuple):
    """The fields of a Map-Register the Map-Server uses, read without the decoder."""

    key_id: int
    alg_id: int
    auth_end: int
    """End of the Authentication Data (it starts at 16)."""
    records: list[RecordView]
    xtr_id: int | None
    site_id: int | None


def parse_register(data: bytes) -> ParsedRegister | None:
    """Read a Map-Register of a common shape; None = use the general decoder."""
    n = len(data)
    if n < 16 or data[0] >> 4 != _TYPE_REGISTER or data[2] & _ENCRYPTED_BYTE2:
        return None
    count = data[3]
    alg_id = data[13]
    auth_len = (data[14] << 8) | data[15]
    rng = _AUTH_LENGTHS.get(alg_id)
    if rng is None or not rng[0] <= auth_len <= rng[1]:
        return None
    pos = 16 + auth_len
    if count == 0 or pos > n:
        return None
    spans: list[tuple[int, int, int, int, int, int, int, int, int, int, int, int]] = []
    for _ in range(count):
        rs = pos
        if rs + 12 > n:
            return None
        ttl, loc_count, mask_len, half, ver, afi = _REC_HEAD.unpack_from(data, rs)
        pos = rs + 12
        iid = 0
        if afi == _AFI_LCAF:
            # Instance-ID LCAF: rsvd1 flags type rsvd2 length(2) iid(4) AFI(2) address
            if pos + 12 > n or data[pos + 2] != _LCAF_IID:
                return None
            length = (data[pos + 4] << 8) | data[pos + 5]
            iid = int.from_bytes(data[pos + 6 : pos + 10], "big")
            afi = (data[pos + 10] << 8) | data[pos + 11]
            alen = _ADDR_LEN.get(afi)
            if alen is None or length != 6 + alen:
                return None
            pos += 12
        else:
            alen = _ADDR_LEN.get(afi)
            if alen is None:
                return None
        eid_at = pos
        pos += alen
        if pos > n or mask_len > _WIDTH[afi]:
            return None
        loc_at = pos
        for _ in range(loc_count):
            if pos + 8 > n:
                return None
            lafi = (data[pos + 6] << 8) | data[pos + 7]
            if lafi == _AFI_IPV4:
                pos += 12
            elif lafi == _AFI_IPV6:
                pos += 24
            elif lafi == _AFI_LCAF:
                if pos + 14 > n:
                    return None
                pos += 14 + ((data[pos + 12] << 8) | data[pos + 13])
            else:
                return None
        if pos > n:
            return None
        spans.append((rs, eid_at, alen, loc_at, pos, iid, afi, ttl, loc_count, mask_len, half, ver))
    xtr_id = site_id = None
    trailer = b""
    if data[0] & _I_BYTE0:
        left = n - pos
        if left == 24:
            site_id = int.from_bytes(data[pos + 16 : n], "big")
        elif left != 16:
            return None
        xtr_id = int.from_bytes(data[pos : pos + 16], "big")
        trailer = data[pos:]
    elif pos != n:
        return None
    head = data[0:3] + data[12:16]
    records = []
    for rs, eid_at, alen, loc_at, end, iid, afi, ttl, loc_count, mask_len, half, ver in spans:
        locs = data[loc_at:end]
        records.append(
            RecordView(
                iid,
                afi,
                int.from_bytes(data[eid_at : eid_at + alen], "big"),
                mask_len,
                ttl,
                half >> 13,
                ver & 0x0FFF,
                locs,
                loc_count,
                head + data[rs:eid_at] + locs + trailer,
            )
        )
    return ParsedRegister(data[12], alg_id, 16 + auth_len, records, xtr_id, site_id)


class QuickRegister(NamedTuple):
    """A one-record Map-Register with a bare IPv4/IPv6 EID, as far as
    :func:`quick_register` reads it (nothing validated beyond the offsets)."""

    afi: int
    addr: int
    mask_len: int
    auth_end: int
    sig: bytes


def quick_eid(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(AFI, EID as int, mask-len, record offset, EID end) of a one-record Map-Register
    with a bare IPv4/IPv6 EID, read at fixed offsets; None for any other shape."""
    n = len(data)
    if n < 16 or data[3] != 1 or data[0] >> 4 != _TYPE_REGISTER:
        return None
    rs = 16 + ((data[14] << 8) | data[15])
    if rs + 12 > n:
        return None
    afi = data[rs + 11]
    if data[rs + 10] or afi not in (_AFI_IPV4, _AFI_IPV6):
        return None
    end = rs + (16 if afi == _AFI_IPV4 else 28)
    if end > n:
        return None
    return afi, int.from_bytes(data[rs + 12 : end], "big"), data[rs + 5], rs, end


def quick_sig(data: bytes, rs: int, end: int) -> bytes:
    """The signature of the one record of a :func:`quick_eid` Map-Register."""
    return data[0:3] + data[12:16] + data[rs : rs + 12] + data[end:]


def quick_register(data: bytes) -> QuickRegister | None:
    """:func:`quick_eid` and :func:`quick_sig` in one (nothing validated beyond the
    offsets: only meaningful when the signature matches one :func:`parse_register` made)."""
    q = quick_eid(data)
    if q is None:
        return None
    afi, addr, mask_len, rs, end = q
    return QuickRegister(afi, addr, mask_len, rs, quick_sig(data, rs, end))


# --- shared objects -------------------------------------------------------------------------


class Interner:
    """One shared object per distinct value (bounded: starts over when full)."""

    __slots__ = ("_d", "limit")

    def __init__(self, limit: int) -> None:
        self._d: dict[Any, Any] = {}
        self.limit = limit

    def __len__(self) -> int:
        return len(self._d)

    def __call__(self, value: Any) -> Any:
        v = self._d.get(value)
        if v is None:
            if len(self._d) >= self.limit:
                self._d.clear()
            v = self._d[value] = value
        return v


class LocatorCache:
    """Locator section bytes -> the decoded locator tuple (general decoder, once each)."""

    __slots__ = ("_d", "limit")

    def __init__(self, limit: int) -> None:
        self._d: dict[bytes, tuple[LocatorRecord, ...] | None] = {}
        self.limit = limit

    def get(self, raw: bytes, count: int) -> tuple[LocatorRecord, ...] | None:
        """The locators of a section of ``count`` locators; None when the decoder refuses it."""
        hit = self._d.get(raw, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        r = Reader(raw)
        try:
            locs: tuple[LocatorRecord, ...] | None = tuple(LocatorRecord.from_wire(r) for _ in range(count))
            if not r.at_end():
                locs = None
        except (DecodeError, ValueError):
            locs = None
        if len(self._d) >= self.limit:
            self._d.clear()
        self._d[raw] = locs
        return locs


# --- HMAC -------------------------------------------------------------------------------------

_HASHES: dict[int, Callable[..., Any]] = {AuthAlg.HMAC_SHA_1_96: hashlib.sha1, AuthAlg.HMAC_SHA_256_128: hashlib.sha256}
_PADS: dict[tuple[bytes, int], tuple[Any, Any]] = {}
_PADS_MAX = 4096


def hmac_digest(key: bytes, alg_id: int, data: bytes) -> bytes:
    """HMAC (RFC 2104) of ``data`` with SHA-1 (alg 1) or SHA-256 (alg 2), full length."""
    pads = _PADS.get((key, alg_id))
    if pads is None:
        h = _HASHES[alg_id]
        block = 64
        k = h(key).digest() if len(key) > block else key
        k = k.ljust(block, b"\0")
        pads = (h(bytes(b ^ 0x36 for b in k)), h(bytes(b ^ 0x5C for b in k)))
        if len(_PADS) >= _PADS_MAX:
            _PADS.clear()
        _PADS[(key, alg_id)] = pads
    inner = pads[0].copy()
    inner.update(data)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()  # type: ignore[no-any-return]


def verify(data: bytes, auth_end: int, key: bytes, alg_id: int) -> bytes | None:
    """Check the HMAC of a received message whose Auth Data is ``data[16:auth_end]``;
    returns the message with the field zeroed (to sign an answer from), None if bad."""
    n = auth_end - 16
    if n <= 0 or alg_id not in _HASHES:
        return None
    zeroed = data[:16] + bytes(n) + data[auth_end:]
    mac = hmac_digest(key, alg_id, zeroed)
    if not hmac.compare_digest(mac[:n], data[16:auth_end]):
        return None
    return zeroed


def notify_from(zeroed: bytes, first: int, auth_end: int, key: bytes, alg_id: int) -> bytes:
    """The Map-Notify that is ``zeroed`` (a verified Map-Register, auth field zeroed) with
    first word ``first``, signed with ``key``."""
    body = first.to_bytes(4, "big") + zeroed[4:]
    mac = hmac_digest(key, alg_id, body)
    return body[:16] + mac[: auth_end - 16] + body[auth_end:]


__all__ = [
    "ACTIONS",
    "Interner",
    "LocatorCache",
    "M_BYTE2",
    "ParsedRegister",
    "QuickRegister",
    "RecordView",
    "T_BYTE2",
    "hmac_digest",
    "notify_from",
    "parse_register",
    "quick_eid",
    "quick_register",
    "quick_sig",
    "verify",
]
