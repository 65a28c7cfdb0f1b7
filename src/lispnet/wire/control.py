"""LISP control messages: ``parse_control(data)`` and ``build(msg)``.

One frozen value class per message (RFC 9301 section 5, RFC 8111, the NAT-traversal
draft, RFC 8113), each with ``to_bytes`` / ``from_bytes``.  The classes live in
``control_mapping`` (Map-Request/Reply/Register/Notify/Notify-Ack), ``control_ddt``
(Map-Referral), ``control_info`` (Info-Request/Reply) and ``control_ecm`` (ECM); this
module adds the Shared Extension message, the ``ControlMessage`` union and the two entry
points.

``parse_control`` dispatches on the type nibble through the registry that the
``@register_control`` decorator fills, and raises only :class:`DecodeError` subclasses,
whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias, cast

from .buffer import Reader, Writer
from .control_base import ControlBase, UnknownControl, check_uint, decode_bytes, register_control
from .control_ddt import MapReferral, ReferralRecord
from .control_ecm import Ecm
from .control_info import InfoReply, InfoRequest
from .control_mapping import MapNotify, MapNotifyAck, MapRegister, MapReply, MapRequest, RequestRecord
from .enums import MessageType


@register_control
@dataclass(frozen=True, slots=True)
class SharedExtension(ControlBase):
    """LISP Shared Extension Message (type 15, RFC 8113): a 12-bit sub-type and a raw body."""

    msg_type: ClassVar[int] = MessageType.SHARED_EXTENSION
    subtype: int
    """The 12-bit sub-type (bits 4..15)."""
    body: bytes = b""
    """Everything after the first 16 bits, as defined by the sub-type."""

    def __post_init__(self) -> None:
        check_uint("subtype", self.subtype, 12)
        if not isinstance(self.body, bytes):
            raise TypeError("body must be bytes")

    def to_wire(self, w: Writer) -> None:
        w.write_u16((self.msg_type << 12) | self.subtype)
        w.write_bytes(self.body)

    @classmethod
    def from_wire(cls, r: Reader) -> SharedExtension:
        first = r.read_u16("Shared Extension header")
        return cls(first & 0x0FFF, r.read_rest())


ControlMessage: TypeAlias = (
    MapRequest
    | MapReply
    | MapRegister
    | MapNotify
    | MapNotifyAck
    | MapReferral
    | InfoRequest
    | InfoReply
    | Ecm
    | SharedExtension
    | UnknownControl
)
"""Any decoded control message."""

CONTROL_CLASSES = (
    MapRequest,
    MapReply,
    MapRegister,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    InfoRequest,
    InfoReply,
    Ecm,
    SharedExtension,
    UnknownControl,
)


def parse_control(data: bytes) -> ControlMessage:
    """Decode one control message (a UDP payload from port 4342).  Raises only DecodeError."""
    return cast(ControlMessage, decode_bytes(data))


def build_control(msg: ControlMessage) -> bytes:
    """Encode a control message."""
    if not isinstance(msg, CONTROL_CLASSES):
        raise TypeError(f"not a control message: {msg!r}")
    return msg.to_bytes()


__all__ = [
    "CONTROL_CLASSES",
    "ControlMessage",
    "Ecm",
    "InfoReply",
    "InfoRequest",
    "MapNotify",
    "MapNotifyAck",
    "MapReferral",
    "MapRegister",
    "MapReply",
    "MapRequest",
    "ReferralRecord",
    "RequestRecord",
    "SharedExtension",
    "UnknownControl",
    "build_control",
    "parse_control",
]
