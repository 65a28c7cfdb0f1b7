"""lispnet.wire: bytes <-> immutable LISP values, no I/O.  See docs/wire-api.md."""

from __future__ import annotations

from .errors import (
    AuthFailure,
    BadAfi,
    BadCount,
    BadLcaf,
    BadLength,
    BadValue,
    DecodeError,
    TrailingBytes,
    Truncated,
    UnknownType,
)

__all__ = [
    "AuthFailure",
    "BadAfi",
    "BadCount",
    "BadLcaf",
    "BadLength",
    "BadValue",
    "DecodeError",
    "TrailingBytes",
    "Truncated",
    "UnknownType",
]
