"""EID prefixes: (instance-id, address, mask-len), hashable and totally ordered.

On the wire an EID is an address plus a mask length in the enclosing record; a
non-zero instance-id travels as an Instance-ID LCAF around the address.  OOR writes
the IID mask-len as 32 and lispers.net as 0 - both mean "this instance-id", so both
give the same :class:`EidPrefix`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from .address import (
    NO_ADDRESS,
    Address,
    E164Address,
    Lcaf,
    MacAddress,
    NoAddress,
    address_bits,
    address_to_int,
    afi_of,
    parse_address,
)
from .lcaf import LcafInstanceId


def _mask_int(value: int, bits: int, mask_len: int) -> int:
    if mask_len >= bits:
        return value
    return value & ~((1 << (bits - mask_len)) - 1) & ((1 << bits) - 1)


def address_from_int(template: Address, value: int) -> Address:
    """An address of ``template``'s family holding integer ``value``."""
    if isinstance(template, IPv4Address):
        return IPv4Address(value)
    if isinstance(template, IPv6Address):
        return IPv6Address(value)
    if isinstance(template, MacAddress):
        return MacAddress(value.to_bytes(6, "big"), template.afi)
    if isinstance(template, E164Address):
        return E164Address(((value << 4) | (int.from_bytes(template.value, "big") & 0xF)).to_bytes(8, "big"))
    return template


@dataclass(frozen=True, slots=True)
class EidPrefix:
    """An EID prefix within an instance-id.  ``address`` keeps whatever host bits it was given."""

    iid: int
    """Instance-id (0 = the default instance)."""
    address: Address
    """The prefix address (IPv4, IPv6, MAC, or any other address value)."""
    mask_len: int
    """Prefix length in bits."""

    def __post_init__(self) -> None:
        if not 0 <= self.iid <= 0xFFFFFFFF:
            raise ValueError(f"instance-id {self.iid} out of range")
        bits = address_bits(self.address)
        limit = bits if bits else 255
        if not 0 <= self.mask_len <= limit:
            raise ValueError(f"mask-len {self.mask_len} out of range 0..{limit} for {self.address}")
        if isinstance(self.address, LcafInstanceId):
            raise ValueError("EidPrefix.address must not itself be an Instance-ID LCAF")

    # --- construction -------------------------------------------------------------
    @classmethod
    def parse(cls, text: str, iid: int = 0) -> EidPrefix:
        """``"10.1.0.0/16"``, ``"2001:db8::/32"``, ``"00:11:22:33:44:55/48"``, or ``"[1000]10.0.0.0/8"``."""
        text = text.strip()
        if text.startswith("["):
            end = text.index("]")
            iid = int(text[1:end])
            text = text[end + 1 :]
        if "/" in text:
            addr_s, len_s = text.rsplit("/", 1)
            addr = parse_address(addr_s)
            mask_len = int(len_s)
        else:
            addr = parse_address(text)
            mask_len = address_bits(addr)
        return cls(iid, addr, mask_len).masked()

    @classmethod
    def from_wire_eid(cls, eid: Address, mask_len: int) -> EidPrefix:
        """The prefix an (EID address, mask-len) pair from a record stands for."""
        if isinstance(eid, LcafInstanceId):
            return cls(eid.iid, eid.address, mask_len)
        return cls(0, eid, mask_len)

    @classmethod
    def host(cls, address: Address | str, iid: int = 0) -> EidPrefix:
        addr = parse_address(address) if isinstance(address, str) else address
        return cls(iid, addr, address_bits(addr))

    def to_wire_eid(self) -> Address:
        """The address to put in a record's EID field (an IID LCAF when iid != 0)."""
        if self.iid:
            return LcafInstanceId(self.iid, self.address)
        return self.address

    # --- prefix arithmetic ------------------------------------------------------------
    @property
    def afi(self) -> int:
        return afi_of(self.address)

    @property
    def max_len(self) -> int:
        return address_bits(self.address)

    @property
    def is_ip(self) -> bool:
        return isinstance(self.address, IPv4Address | IPv6Address)

    def masked(self) -> EidPrefix:
        """The same prefix with host bits cleared."""
        bits = self.max_len
        if not bits or isinstance(self.address, NoAddress | Lcaf):
            return self
        v = address_to_int(self.address)
        mv = _mask_int(v, bits, self.mask_len)
        if mv == v:
            return self
        return EidPrefix(self.iid, address_from_int(self.address, mv), self.mask_len)

    def family_key(self) -> tuple[int, int]:
        return (self.iid, self.afi)

    def contains(self, other: EidPrefix) -> bool:
        """True when ``other`` lies inside this prefix (same iid and family)."""
        if self.family_key() != other.family_key() or other.mask_len < self.mask_len:
            return False
        bits = self.max_len
        if not bits:
            return self.address == other.address
        return _mask_int(address_to_int(self.address), bits, self.mask_len) == _mask_int(
            address_to_int(other.address), bits, self.mask_len
        )

    def overlaps(self, other: EidPrefix) -> bool:
        return self.contains(other) or other.contains(self)

    def contains_address(self, addr: Address, iid: int | None = None) -> bool:
        return self.contains(EidPrefix(self.iid if iid is None else iid, addr, address_bits(addr)))

    def sort_key(self) -> tuple[int, int, int, int, str]:
        return (self.iid, self.afi, address_to_int(self.address), self.mask_len, str(self.address))

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, EidPrefix):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def __le__(self, other: Any) -> bool:
        if not isinstance(other, EidPrefix):
            return NotImplemented
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: Any) -> bool:
        if not isinstance(other, EidPrefix):
            return NotImplemented
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: Any) -> bool:
        if not isinstance(other, EidPrefix):
            return NotImplemented
        return self.sort_key() >= other.sort_key()

    def __str__(self) -> str:
        core = f"{self.address}/{self.mask_len}"
        return f"[{self.iid}]{core}" if self.iid else core


def ip_prefix(text: str, iid: int = 0) -> EidPrefix:
    """Shorthand for :meth:`EidPrefix.parse`."""
    return EidPrefix.parse(text, iid)


__all__ = ["EidPrefix", "ip_prefix", "address_from_int", "NO_ADDRESS", "ip_address"]
