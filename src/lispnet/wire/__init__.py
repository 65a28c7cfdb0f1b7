"""lispnet.wire: bytes <-> immutable LISP values, no I/O.  See docs/wire-api.md."""

from __future__ import annotations

from typing import TypeAlias

from .auth import compute_auth, verify_raw
from .control import CONTROL_CLASSES as _CONTROL_CLASSES
from .control import (
    ControlMessage,
    Ecm,
    InfoReply,
    InfoRequest,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    ReferralRecord,
    RequestRecord,
    SharedExtension,
    UnknownControl,
    parse_control,
)
from .data import LispHeader, VxlanGbpHeader, VxlanGpeHeader, VxlanHeader, parse_data_header
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

DataHeader: TypeAlias = LispHeader | VxlanHeader | VxlanGpeHeader | VxlanGbpHeader
"""Any data-plane header value."""

_DATA_CLASSES = (LispHeader, VxlanHeader, VxlanGpeHeader, VxlanGbpHeader)


def build(value: ControlMessage | DataHeader) -> bytes:
    """Encode any control message or data header: ``build(parse_control(b)) == b``."""
    if isinstance(value, _CONTROL_CLASSES) or isinstance(value, _DATA_CLASSES):
        return value.to_bytes()
    raise TypeError(f"cannot build {type(value).__name__}: not a control message or data header")


__all__ = [
    "AuthFailure",
    "BadAfi",
    "BadCount",
    "BadLcaf",
    "BadLength",
    "BadValue",
    "ControlMessage",
    "DataHeader",
    "DecodeError",
    "Ecm",
    "InfoReply",
    "InfoRequest",
    "LispHeader",
    "MapNotify",
    "MapNotifyAck",
    "MapReferral",
    "MapRegister",
    "MapReply",
    "MapRequest",
    "ReferralRecord",
    "RequestRecord",
    "SharedExtension",
    "TrailingBytes",
    "Truncated",
    "UnknownControl",
    "UnknownType",
    "VxlanGbpHeader",
    "VxlanGpeHeader",
    "VxlanHeader",
    "build",
    "compute_auth",
    "parse_control",
    "parse_data_header",
    "verify_raw",
]
