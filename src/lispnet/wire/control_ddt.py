"""Map-Referral (type 6), LISP-DDT (RFC 8111 section 6.4).

A referral record is a mapping record whose locators are DDT nodes or Map-Servers, whose
ACT holds a referral action, and which has an I (incomplete) bit and a 4-bit SigCnt.
Signatures (DDT-SEC) have no format we can bound, so a non-zero SigCnt is refused with
:class:`UnknownType` rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .address import Address, read_address, write_address
from .buffer import Reader, Writer
from .control_base import (
    MIN_EID_RECORD,
    MIN_LOCATOR,
    ControlBase,
    as_tuple,
    check_count,
    check_prefix,
    check_uint,
    checked_prefix,
    construct,
    register_control,
)
from .enums import MessageType, ReferralAction
from .errors import UnknownType
from .prefix import EidPrefix
from .records import LocatorRecord

REF_A = 0x1000
REF_I = 0x0800


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """One Map-Referral record: a prefix and the DDT nodes / Map-Servers it is referred to."""

    eid: Address
    """The referred EID prefix (an Instance-ID LCAF when the instance-id is not 0)."""
    mask_len: int
    """EID mask-len."""
    referrals: tuple[LocatorRecord, ...] = ()
    """The referral set (DDT node or Map-Server RLOCs)."""
    ttl: int = 1440
    """Record TTL in minutes."""
    action: ReferralAction = ReferralAction.NODE_REFERRAL
    """Referral action (ACT)."""
    authoritative: bool = False
    """A: sent by a node authoritative for the prefix."""
    incomplete: bool = False
    """I: the referral set is partial; do not cache it."""
    map_version: int = 0
    """12-bit map-version."""

    def __post_init__(self) -> None:
        as_tuple(self, "referrals")
        check_uint("ttl", self.ttl, 32)
        check_uint("mask_len", self.mask_len, 8)
        check_uint("action", int(self.action), 3)
        check_uint("map_version", self.map_version, 12)
        if len(self.referrals) > 255:
            raise ValueError("at most 255 referrals per record")
        for loc in self.referrals:
            if not isinstance(loc, LocatorRecord):
                raise TypeError(f"not a LocatorRecord: {loc!r}")
        check_prefix(self.eid, self.mask_len)

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.from_wire_eid(self.eid, self.mask_len)

    @classmethod
    def for_prefix(
        cls,
        prefix: EidPrefix,
        referrals: tuple[LocatorRecord, ...] | list[LocatorRecord] = (),
        ttl: int = 1440,
        action: ReferralAction = ReferralAction.NODE_REFERRAL,
        authoritative: bool = False,
        incomplete: bool = False,
    ) -> ReferralRecord:
        return cls(prefix.to_wire_eid(), prefix.mask_len, tuple(referrals), ttl, action, authoritative, incomplete)

    @classmethod
    def from_wire(cls, r: Reader) -> ReferralRecord:
        start = r.pos
        ttl = r.read_u32("record TTL")
        count = r.read_u8("referral count")
        mask_len = r.read_u8("EID mask-len")
        half = r.read_u16("ACT/A/I flags")
        ver = r.read_u16("SigCnt/map-version")
        if ver >> 12:
            raise r.error(UnknownType, f"SigCnt {ver >> 12}: DDT signatures are not supported", r.pos - 2)
        eid = read_address(r)
        checked_prefix(r, eid, mask_len, start + 5)
        check_count(r, count, MIN_LOCATOR, "referral", start + 4)
        referrals = tuple(LocatorRecord.from_wire(r) for _ in range(count))
        return construct(
            r,
            start,
            cls,
            eid,
            mask_len,
            referrals,
            ttl,
            ReferralAction(half >> 13),
            bool(half & REF_A),
            bool(half & REF_I),
            ver & 0x0FFF,
        )

    def to_wire(self, w: Writer) -> None:
        w.write_u32(self.ttl)
        w.write_u8(len(self.referrals))
        w.write_u8(self.mask_len)
        w.write_u16(
            (int(self.action) << 13) | (REF_A if self.authoritative else 0) | (REF_I if self.incomplete else 0)
        )
        w.write_u16(self.map_version)
        write_address(w, self.eid)
        for loc in self.referrals:
            loc.to_wire(w)


@register_control
@dataclass(frozen=True, slots=True)
class MapReferral(ControlBase):
    """Map-Referral (type 6): a DDT node's or Map-Server's answer to a DDT Map-Request."""

    msg_type: ClassVar[int] = MessageType.MAP_REFERRAL
    nonce: int
    """Copied from the Map-Request."""
    records: tuple[ReferralRecord, ...] = ()
    """The referral records."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        as_tuple(self, "records")
        if len(self.records) > 255:
            raise ValueError("at most 255 records")
        for rec in self.records:
            if not isinstance(rec, ReferralRecord):
                raise TypeError(f"not a ReferralRecord: {rec!r}")

    def to_wire(self, w: Writer) -> None:
        w.write_u32((self.msg_type << 28) | len(self.records))
        w.write_u64(self.nonce)
        for rec in self.records:
            rec.to_wire(w)

    @classmethod
    def from_wire(cls, r: Reader) -> MapReferral:
        start = r.pos
        first = r.read_u32("Map-Referral header")
        nonce = r.read_u64("nonce")
        count = first & 0xFF
        check_count(r, count, MIN_EID_RECORD, "record", start + 3)
        records = tuple(ReferralRecord.from_wire(r) for _ in range(count))
        r.expect_end("Map-Referral")
        return construct(r, start, cls, nonce, records)


__all__ = ["MapReferral", "ReferralRecord"]
