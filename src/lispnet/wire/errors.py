"""Typed decode errors for everything a peer can send us.

Receiving garbage is a :class:`DecodeError` (a ``ValueError`` subclass), never an
``IndexError`` or ``struct.error``.  Building an invalid value yourself is a plain
``ValueError``/``TypeError`` raised by the value class constructor: that is our bug,
not the peer's.  Every error carries the byte ``offset`` where decoding stopped and
the control-message ``msg_type`` when it is known, so operators can find the bad byte.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """A received byte string is not a valid LISP message or header."""

    reason = "malformed"

    def __init__(self, message: str, offset: int | None = None, msg_type: int | None = None) -> None:
        self.message = message
        self.offset = offset
        self.msg_type = msg_type
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class Truncated(DecodeError):
    """The input ended before a field was complete."""

    reason = "truncated"


class BadLength(DecodeError):
    """A length field disagrees with the bytes that carry it."""

    reason = "bad-length"


class TrailingBytes(DecodeError):
    """Bytes are left over after a complete message."""

    reason = "trailing-bytes"


class UnknownType(DecodeError):
    """A type code this decoder cannot interpret (when it must)."""

    reason = "unknown-type"


class BadAfi(DecodeError):
    """An address family that is unknown or invalid in its position."""

    reason = "bad-afi"


class BadLcaf(DecodeError):
    """An LCAF whose length or body is inconsistent."""

    reason = "bad-lcaf"


class BadCount(DecodeError):
    """A record / locator / RLOC count that the message cannot hold."""

    reason = "bad-count"


class BadValue(DecodeError):
    """A field value outside its allowed range (e.g. a mask length of 40 for IPv4)."""

    reason = "bad-value"


class AuthFailure(DecodeError):
    """Authentication data is missing, of the wrong length, or does not verify."""

    reason = "auth-failure"
