"""Info-Request / Info-Reply (type 7), draft-ermagan-lisp-nat-traversal section 5.

Both share one layout; the R bit (0x08000000) tells them apart.  After the
authentication section (the same as Map-Register's) come a TTL, a reserved byte, the EID
mask-len and EID prefix, then either AFI 0 / an AFI 17 hostname (request) or the
NAT-Traversal LCAF (reply).  lispers.net sends requests with no authentication
(Key ID 0, Algorithm ID 0, length 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .address import NO_ADDRESS, Address, DistinguishedName, NoAddress, read_address, write_address
from .buffer import Reader, Writer
from .control_base import (
    AuthMixin,
    ControlBase,
    check_auth,
    check_prefix,
    check_uint,
    checked_prefix,
    construct,
    read_auth,
    register_control,
    write_auth,
)
from .enums import AuthAlg, MessageType
from .errors import BadAfi
from .lcaf import LcafNatTraversal
from .prefix import EidPrefix

INFO_R = 0x08000000


def _check_common(msg: InfoRequest | InfoReply) -> None:
    check_uint("nonce", msg.nonce, 64)
    check_uint("ttl", msg.ttl, 32)
    check_uint("mask_len", msg.mask_len, 8)
    check_prefix(msg.eid, msg.mask_len)
    check_auth(msg.key_id, msg.alg_id, msg.auth_data)


def _write_common(msg: InfoRequest | InfoReply, w: Writer, reply: bool) -> None:
    w.write_u32((MessageType.INFO << 28) | (INFO_R if reply else 0))
    w.write_u64(msg.nonce)
    write_auth(w, msg.key_id, msg.alg_id, msg.auth_data)
    w.write_u32(msg.ttl)
    w.write_u8(0)
    w.write_u8(msg.mask_len)
    write_address(w, msg.eid)


@register_control
@dataclass(frozen=True, slots=True)
class InfoRequest(ControlBase, AuthMixin):
    """Info-Request (type 7, R = 0): an xTR asks its Map-Server how it is seen (NAT discovery)."""

    msg_type: ClassVar[int] = MessageType.INFO
    nonce: int
    """Echoed in the Info-Reply."""
    eid: Address = NO_ADDRESS
    """EID prefix (often AFI 0)."""
    mask_len: int = 0
    """EID mask-len."""
    ttl: int = 0
    """TTL in minutes (0 in a request)."""
    key_id: int = 0
    """Which pre-shared key."""
    alg_id: int = AuthAlg.NONE
    """HMAC algorithm (0 = none, as lispers.net sends)."""
    auth_data: bytes = b""
    """Authentication data."""
    hostname: str | None = None
    """The xTR's name (AFI 17, lispers.net) or None (AFI 0)."""

    def __post_init__(self) -> None:
        _check_common(self)
        if self.hostname is not None:
            DistinguishedName(self.hostname)

    def to_wire(self, w: Writer) -> None:
        _write_common(self, w, reply=False)
        write_address(w, NO_ADDRESS if self.hostname is None else DistinguishedName(self.hostname))

    @classmethod
    def from_wire(cls, r: Reader) -> InfoRequest | InfoReply:
        start = r.pos
        first = r.read_u32("Info header")
        nonce = r.read_u64("nonce")
        key_id, alg_id, auth_data = read_auth(r)
        ttl = r.read_u32("TTL")
        r.read_u8("reserved")
        mask_len = r.read_u8("EID mask-len")
        eid_at = r.pos
        eid = read_address(r)
        checked_prefix(r, eid, mask_len, eid_at)
        tail_at = r.pos
        tail = read_address(r)
        r.expect_end("Info message")
        alg = AuthAlg(alg_id)
        if first & INFO_R:
            return construct(r, start, InfoReply, nonce, eid, mask_len, ttl, key_id, alg, auth_data, tail)
        if isinstance(tail, NoAddress):
            hostname = None
        elif isinstance(tail, DistinguishedName):
            hostname = tail.name
        else:
            raise r.error(BadAfi, "Info-Request must end with AFI 0 or an AFI 17 hostname", tail_at)
        return construct(r, start, cls, nonce, eid, mask_len, ttl, key_id, alg, auth_data, hostname)

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.from_wire_eid(self.eid, self.mask_len)


@dataclass(frozen=True, slots=True)
class InfoReply(ControlBase, AuthMixin):
    """Info-Reply (type 7, R = 1): the Map-Server's answer with the NAT-Traversal LCAF."""

    msg_type: ClassVar[int] = MessageType.INFO
    nonce: int
    """Copied from the Info-Request."""
    eid: Address = NO_ADDRESS
    """EID prefix, copied from the request."""
    mask_len: int = 0
    """EID mask-len."""
    ttl: int = 0
    """How long (minutes) the xTR may keep the RTR list."""
    key_id: int = 0
    """Which pre-shared key."""
    alg_id: int = AuthAlg.NONE
    """HMAC algorithm."""
    auth_data: bytes = b""
    """Authentication data."""
    nat: Address = NO_ADDRESS
    """The NAT-Traversal LCAF (type 7): ports, global/MS/private ETR RLOCs and the RTRs.

    Typed as any address so that a peer's odd reply still decodes; see ``nat_traversal``."""

    def __post_init__(self) -> None:
        _check_common(self)

    @property
    def nat_traversal(self) -> LcafNatTraversal | None:
        """The NAT-Traversal LCAF, or None when the reply carries something else."""
        return self.nat if isinstance(self.nat, LcafNatTraversal) else None

    def to_wire(self, w: Writer) -> None:
        _write_common(self, w, reply=True)
        write_address(w, self.nat)

    @classmethod
    def from_wire(cls, r: Reader) -> InfoRequest | InfoReply:
        return InfoRequest.from_wire(r)

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.from_wire_eid(self.eid, self.mask_len)


__all__ = ["InfoReply", "InfoRequest"]
