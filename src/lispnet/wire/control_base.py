"""Common machinery of the control messages: the type registry, the shared base class,
and the helpers every message codec uses (auth section, counts, record checks).

Every control message starts with a 4-bit Type in the top nibble of byte 0 (RFC 9301
section 5).  Message classes register their decoder by type with
:func:`register_control`; :func:`decode_message` dispatches on the nibble and falls back
to :class:`UnknownControl` (raw bytes, re-encoded exactly) for types nobody claims.

Decoders raise only :class:`DecodeError` subclasses.  A value constructor refusing a
decoded field (a ``ValueError``) is turned into :class:`BadValue` at the offset of the
structure being built, by :func:`construct`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from .address import Address
from .auth import (
    AUTH_DATA_OFFSET,
    auth_length_ok,
    compute_auth,
    default_length,
    verify_digest,
)
from .buffer import Reader, Writer
from .errors import (
    AuthFailure,
    BadCount,
    BadLength,
    BadValue,
    DecodeError,
    TrailingBytes,
    Truncated,
    UnknownType,
)
from .prefix import EidPrefix
from .records import EidRecord

T = TypeVar("T")

# Smallest encodings, used to reject counts that cannot possibly fit before looping.
MIN_ADDRESS = 2
MIN_LOCATOR = 6 + MIN_ADDRESS
MIN_EID_RECORD = 10 + MIN_ADDRESS
MIN_REQUEST_RECORD = 2 + MIN_ADDRESS

XTR_ID_LEN = 16
SITE_ID_LEN = 8


class ControlBase(ABC):
    """Base of the message classes: ``to_bytes`` / ``from_bytes`` over ``to_wire`` / ``from_wire``."""

    __slots__ = ()
    msg_type: ClassVar[int]

    @abstractmethod
    def to_wire(self, w: Writer) -> None:
        """Encode the message."""

    @classmethod
    @abstractmethod
    def from_wire(cls, r: Reader) -> ControlBase:
        """Decode the message from ``r``."""

    def to_bytes(self) -> bytes:
        """The message as the UDP payload to send."""
        w = Writer()
        self.to_wire(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode ``data`` and insist that it is a message of this class."""
        msg = decode_bytes(data)
        if not isinstance(msg, cls):
            raise UnknownType(f"expected {cls.__name__}, got {type(msg).__name__}", 0, data[0] >> 4)
        return msg


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A message of a type we do not interpret (0, 9..14): the raw bytes, re-encoded exactly."""

    msg_type: int
    """The 4-bit type (the top nibble of ``data[0]``)."""
    data: bytes
    """The whole message as received, type nibble included."""

    def __post_init__(self) -> None:
        if not 0 <= self.msg_type <= 15:
            raise ValueError("message type must fit in 4 bits")
        if self.msg_type in _DECODERS:
            raise ValueError(f"message type {self.msg_type} has its own class")
        if not self.data or self.data[0] >> 4 != self.msg_type:
            raise ValueError("data must start with the type nibble")

    def to_wire(self, w: Writer) -> None:
        w.write_bytes(self.data)

    def to_bytes(self) -> bytes:
        return bytes(self.data)

    @classmethod
    def from_bytes(cls, data: bytes) -> UnknownControl:
        msg = decode_bytes(data)
        if not isinstance(msg, cls):
            raise UnknownType(f"expected UnknownControl, got {type(msg).__name__}", 0, data[0] >> 4)
        return msg


_DECODERS: dict[int, Callable[[Reader], ControlBase]] = {}

C = TypeVar("C", bound=type[ControlBase])


def register_control(cls: C) -> C:
    """Class decorator: decode messages of ``cls.msg_type`` with ``cls.from_wire``."""
    t = cls.msg_type
    if t in _DECODERS:
        raise RuntimeError(f"control message type {t} registered twice")
    _DECODERS[t] = cls.from_wire
    return cls


def decode_message(r: Reader) -> ControlBase | UnknownControl:
    """Decode one message filling ``r`` (from ``r.pos`` to ``r.end``)."""
    t = r.peek_u8("message type") >> 4
    r.msg_type = t
    decoder = _DECODERS.get(t)
    if decoder is None:
        return UnknownControl(t, r.read_rest())
    start = r.pos
    try:
        return decoder(r)
    except DecodeError:
        raise
    except ValueError as e:
        # Last resort: a constructor refused a field that no local check caught.
        raise BadValue(str(e), start, t) from None


def decode_bytes(data: bytes) -> ControlBase | UnknownControl:
    data = bytes(data)
    if not data:
        raise Truncated("empty control message", 0, None)
    return decode_message(Reader(data))


# --- helpers for decoders -----------------------------------------------------------------


def construct(r: Reader, offset: int, ctor: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a value constructor; a ``ValueError`` becomes ``BadValue`` at ``offset``."""
    try:
        return ctor(*args, **kwargs)
    except DecodeError:
        raise
    except ValueError as e:
        raise BadValue(str(e), offset, r.msg_type) from None


def check_count(r: Reader, count: int, min_size: int, what: str, offset: int) -> None:
    """Reject a count whose items cannot fit in what is left, before decoding them."""
    if count * min_size > r.remaining:
        raise BadCount(
            f"{what} count {count} needs at least {count * min_size} byte(s), {r.remaining} left",
            offset,
            r.msg_type,
        )


def check_prefix(eid: Address, mask_len: int) -> None:
    """Raise ``ValueError`` unless (eid, mask-len) is a valid EID prefix (mask within the family)."""
    EidPrefix.from_wire_eid(eid, mask_len)


def checked_prefix(r: Reader, eid: Address, mask_len: int, offset: int) -> None:
    try:
        check_prefix(eid, mask_len)
    except ValueError as e:
        raise BadValue(str(e), offset, r.msg_type) from None


def read_eid_record(r: Reader) -> EidRecord:
    """A mapping record (RFC 9301 section 5.4) with its mask-len checked against the EID."""
    start = r.pos
    if r.remaining >= MIN_EID_RECORD:
        loc_count = r.data[start + 4]
        if MIN_EID_RECORD + loc_count * MIN_LOCATOR > r.remaining:
            raise BadCount(
                f"locator count {loc_count} cannot fit in the {r.remaining} byte(s) left", start + 4, r.msg_type
            )
    rec = EidRecord.from_wire(r)
    checked_prefix(r, rec.eid, rec.mask_len, start + 5)
    return rec


def read_eid_records(r: Reader, count: int, offset: int) -> tuple[EidRecord, ...]:
    check_count(r, count, MIN_EID_RECORD, "record", offset)
    return tuple(read_eid_record(r) for _ in range(count))


def check_records(records: tuple[EidRecord, ...]) -> None:
    """Constructor-side checks shared by the mapping messages."""
    if len(records) > 255:
        raise ValueError("at most 255 records per message")
    for rec in records:
        if not isinstance(rec, EidRecord):
            raise TypeError(f"not an EidRecord: {rec!r}")
        check_prefix(rec.eid, rec.mask_len)


def as_tuple(obj: object, name: str) -> None:
    """Normalise a list field of a frozen dataclass to a tuple (so values compare equal)."""
    v = getattr(obj, name)
    if not isinstance(v, tuple):
        object.__setattr__(obj, name, tuple(v))


def check_uint(name: str, v: int | None, bits: int) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int")
    if not 0 <= v < (1 << bits):
        raise ValueError(f"{name}={v} does not fit in {bits} bits")


def read_trailer_ids(r: Reader, what: str) -> tuple[int, int | None]:
    """xTR-ID (128) and, when 8 more bytes remain, site-ID (64), ending the message.

    lispers.net appends only the xTR-ID to a Map-Request, so the remaining length decides.
    """
    n = r.remaining
    if n < XTR_ID_LEN:
        raise r.error(Truncated, f"{what}: xTR-ID needs 16 bytes, {n} left")
    if n not in (XTR_ID_LEN, XTR_ID_LEN + SITE_ID_LEN):
        raise r.error(TrailingBytes, f"{what}: {n} byte(s) after the records, expected 16 or 24")
    xtr_id = r.read_uint(XTR_ID_LEN, "xTR-ID")
    site_id = r.read_u64("site-ID") if n == XTR_ID_LEN + SITE_ID_LEN else None
    return xtr_id, site_id


def write_trailer_ids(w: Writer, xtr_id: int | None, site_id: int | None) -> None:
    if xtr_id is not None:
        w.write_uint(xtr_id, XTR_ID_LEN, "xTR-ID")
        if site_id is not None:
            w.write_u64(site_id, "site-ID")


def check_trailer_ids(xtr_id: int | None, site_id: int | None) -> None:
    check_uint("xtr_id", xtr_id, 128)
    check_uint("site_id", site_id, 64)
    if site_id is not None and xtr_id is None:
        raise ValueError("site_id needs an xtr_id")


# --- the Key ID / Algorithm ID / Authentication Data section --------------------------------


def read_auth(r: Reader) -> tuple[int, int, bytes]:
    """Key ID (8), Algorithm ID (8), Auth Data Length (16), Auth Data."""
    key_id = r.read_u8("key id")
    alg_id = r.read_u8("algorithm id")
    at = r.pos
    length = r.read_u16("auth data length")
    if length > r.remaining:
        raise r.error(BadLength, f"auth data length {length} exceeds the {r.remaining} byte(s) left", at)
    if not auth_length_ok(alg_id, length):
        raise r.error(AuthFailure, f"auth data length {length} does not fit algorithm id {alg_id}", at)
    return key_id, alg_id, r.read_bytes(length, "auth data")


def write_auth(w: Writer, key_id: int, alg_id: int, auth_data: bytes) -> None:
    w.write_u8(key_id, "key id")
    w.write_u8(int(alg_id), "algorithm id")
    w.write_u16(len(auth_data), "auth data length")
    w.write_bytes(auth_data)


def check_auth(key_id: int, alg_id: int, auth_data: bytes) -> None:
    check_uint("key_id", key_id, 8)
    check_uint("alg_id", int(alg_id), 8)
    if not isinstance(auth_data, bytes):
        raise TypeError("auth_data must be bytes")
    if not auth_length_ok(alg_id, len(auth_data)):
        raise ValueError(f"auth data of {len(auth_data)} byte(s) does not fit algorithm id {alg_id}")


class AuthMixin:
    """``signed`` / ``verify`` for messages with an authentication section at offset 12.

    The HMAC is computed over this message's own encoding with the Auth Data zeroed
    (RFC 9301 section 5.6), which is byte-identical to what was received because
    ``build(parse_control(b)) == b``.
    """

    __slots__ = ()
    alg_id: int
    auth_data: bytes

    if TYPE_CHECKING:

        def to_bytes(self) -> bytes: ...

    def signed(self, key: bytes, length: int | None = None) -> Self:
        """A copy with Auth Data filled: the full digest (20 / 32 bytes) or ``length`` bytes."""
        n = default_length(self.alg_id, length)
        me: Any = self
        blank = dataclasses.replace(me, auth_data=bytes(n))
        mac = compute_auth(self.alg_id, key, blank.to_bytes())[:n]
        result: Self = dataclasses.replace(blank, auth_data=mac)
        return result

    def verify(self, key: bytes) -> bool:
        """Whether Auth Data matches the first Auth-Data-Length bytes of our HMAC under ``key``."""
        if not self.auth_data:
            return False
        me: Any = self
        blank = dataclasses.replace(me, auth_data=bytes(len(self.auth_data)))
        return verify_digest(self.alg_id, key, blank.to_bytes(), self.auth_data)


__all__ = [
    "AUTH_DATA_OFFSET",
    "AuthMixin",
    "ControlBase",
    "UnknownControl",
    "construct",
    "decode_bytes",
    "decode_message",
    "register_control",
]
