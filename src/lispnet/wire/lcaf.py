"""LCAF bodies (RFC 8060).  One frozen value class per type, registered by type code.

Each class reads its body from a reader restricted to the LCAF Length
(``body_from_wire``) and writes it back (``body_to_wire``); ``address.py`` writes the
common header and derives the Length.  Nested addresses go through ``read_address`` /
``write_address``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import NO_ADDRESS, Address, Lcaf, read_address, register_lcaf, write_address
from .buffer import Reader, Writer
from .enums import LcafType

MAX_IID = 0xFFFFFF


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafInstanceId(Lcaf):
    """Type 2 (RFC 8060 section 4.1): an address scoped by a 24-bit (wire: 32-bit) instance-id."""

    lcaf_type = LcafType.INSTANCE_ID
    iid: int
    """The instance-id (0..2^32-1 on the wire; LISP uses 24 bits)."""
    address: Address = NO_ADDRESS
    """The scoped address (AFI 0 for an IID-only value)."""
    iid_mask_len: int = 0
    """IID mask-len (Rsvd2): 0 = this IID; lispers.net sends 0, OOR 32."""

    def __post_init__(self) -> None:
        if not 0 <= self.iid <= 0xFFFFFFFF:
            raise ValueError(f"instance-id {self.iid} out of range")
        if not 0 <= self.iid_mask_len <= 255:
            raise ValueError("IID mask-len must fit in 8 bits")

    def header_bytes(self) -> tuple[int, int, int]:
        return (0, 0, self.iid_mask_len)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafInstanceId:
        iid = r.read_u32("instance-id")
        addr = read_address(r)
        return cls(iid, addr, rsvd2)

    def body_to_wire(self, w: Writer) -> None:
        w.write_u32(self.iid, "instance-id")
        write_address(w, self.address)

    def __str__(self) -> str:
        return f"[{self.iid}]{self.address}"
