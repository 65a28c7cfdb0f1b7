"""Mapping records and locator records (RFC 9301 section 5.4), shared by Map-Reply,
Map-Register, Map-Notify(-Ack) and the Map-Reply record of a Map-Request.

Counts are derived on encode; flags are named booleans; reserved bits are written as 0
and ignored on receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .address import Address, read_address, write_address
from .buffer import Reader, Writer
from .enums import Action
from .errors import BadValue
from .prefix import EidPrefix

LOC_FLAG_LOCAL = 0x0004
LOC_FLAG_PROBED = 0x0002
LOC_FLAG_REACHABLE = 0x0001


@dataclass(frozen=True, slots=True)
class LocatorRecord:
    """One RLOC of a mapping (RFC 9301 section 5.4, "Locator" fields)."""

    address: Address
    """The RLOC (IPv4, IPv6 or an LCAF such as ELP, RLE, NAT, Security-Key)."""
    priority: int = 1
    """Unicast priority: lower is preferred, 255 = do not use for unicast."""
    weight: int = 100
    """Unicast weight among the locators of the best priority."""
    m_priority: int = 255
    """Multicast priority (255 = not for multicast)."""
    m_weight: int = 0
    """Multicast weight."""
    local: bool = False
    """L: the sender's own locator."""
    probed: bool = False
    """p: this locator answered an RLOC-probe."""
    reachable: bool = True
    """R: the sender considers the locator up."""

    def __post_init__(self) -> None:
        for name in ("priority", "weight", "m_priority", "m_weight"):
            v = getattr(self, name)
            if not 0 <= v <= 255:
                raise ValueError(f"{name}={v} must be 0..255")

    @classmethod
    def from_wire(cls, r: Reader) -> LocatorRecord:
        priority = r.read_u8("priority")
        weight = r.read_u8("weight")
        m_priority = r.read_u8("M priority")
        m_weight = r.read_u8("M weight")
        flags = r.read_u16("locator flags")
        addr = read_address(r)
        return cls(
            addr,
            priority,
            weight,
            m_priority,
            m_weight,
            bool(flags & LOC_FLAG_LOCAL),
            bool(flags & LOC_FLAG_PROBED),
            bool(flags & LOC_FLAG_REACHABLE),
        )

    def to_wire(self, w: Writer) -> None:
        w.write_u8(self.priority)
        w.write_u8(self.weight)
        w.write_u8(self.m_priority)
        w.write_u8(self.m_weight)
        flags = (
            (LOC_FLAG_LOCAL if self.local else 0)
            | (LOC_FLAG_PROBED if self.probed else 0)
            | (LOC_FLAG_REACHABLE if self.reachable else 0)
        )
        w.write_u16(flags)
        write_address(w, self.address)


@dataclass(frozen=True, slots=True)
class EidRecord:
    """A mapping record: an EID prefix and its locator set (or a negative action)."""

    eid: Address
    """The EID as on the wire (an Instance-ID LCAF when the instance-id is not 0)."""
    mask_len: int
    """EID mask-len (of the inner address for an IID LCAF)."""
    locators: tuple[LocatorRecord, ...] = ()
    """The locator set; empty for a negative record."""
    ttl: int = 1440
    """Record TTL in minutes (0 = remove now, 0xFFFFFFFF allowed)."""
    action: Action = Action.NO_ACTION
    """ACT: what an ITR does with a negative record."""
    authoritative: bool = False
    """A: sent by the owner of the mapping (an ETR, or the MS with authority)."""
    map_version: int = 0
    """12-bit map-version (RFC 9302), 0 = not versioned."""

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 0xFFFFFFFF:
            raise ValueError("record TTL must fit in 32 bits")
        if not 0 <= self.mask_len <= 255:
            raise ValueError("mask-len must fit in 8 bits")
        if not 0 <= int(self.action) <= 7:
            raise ValueError("action must fit in 3 bits")
        if not 0 <= self.map_version <= 0xFFF:
            raise ValueError("map-version must fit in 12 bits")
        if len(self.locators) > 255:
            raise ValueError("at most 255 locators per record")
        if not isinstance(self.locators, tuple):
            object.__setattr__(self, "locators", tuple(self.locators))

    @classmethod
    def for_prefix(
        cls,
        prefix: EidPrefix,
        locators: tuple[LocatorRecord, ...] | list[LocatorRecord] = (),
        ttl: int = 1440,
        action: Action = Action.NO_ACTION,
        authoritative: bool = False,
        map_version: int = 0,
    ) -> EidRecord:
        return cls(prefix.to_wire_eid(), prefix.mask_len, tuple(locators), ttl, action, authoritative, map_version)

    @property
    def prefix(self) -> EidPrefix:
        """The (instance-id, address, mask-len) this record maps.  Raises ValueError if invalid."""
        return EidPrefix.from_wire_eid(self.eid, self.mask_len)

    @property
    def is_negative(self) -> bool:
        return not self.locators

    @classmethod
    def from_wire(cls, r: Reader) -> EidRecord:
        ttl = r.read_u32("record TTL")
        loc_count = r.read_u8("locator count")
        mask_len = r.read_u8("EID mask-len")
        half = r.read_u16("ACT/A flags")
        ver = r.read_u16("map-version")
        eid = read_address(r)
        locators = tuple(LocatorRecord.from_wire(r) for _ in range(loc_count))
        return cls(eid, mask_len, locators, ttl, Action(half >> 13), bool(half & 0x1000), ver & 0x0FFF)

    def to_wire(self, w: Writer) -> None:
        w.write_u32(self.ttl)
        w.write_u8(len(self.locators))
        w.write_u8(self.mask_len)
        w.write_u16((int(self.action) << 13) | (0x1000 if self.authoritative else 0))
        w.write_u16(self.map_version)
        write_address(w, self.eid)
        for loc in self.locators:
            loc.to_wire(w)



def validated_prefix(r: Reader, eid: Address, mask_len: int, offset: int) -> EidPrefix:
    """Turn a decoded (eid, mask-len) into an EidPrefix or raise ``BadValue`` at ``offset``."""
    try:
        return EidPrefix.from_wire_eid(eid, mask_len)
    except ValueError as e:
        raise BadValue(str(e), offset, r.msg_type) from None


__all__ = ["LocatorRecord", "EidRecord", "validated_prefix", "field"]
