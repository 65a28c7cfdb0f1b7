"""AFI-encoded addresses (RFC 9301 section 5, RFC 8060 for LCAF).

Every address on the wire is ``AFI (16 bits) + body``; the body length follows from the
AFI.  Values:

* AFI 0           -> :class:`NoAddress`
* AFI 1 / 2       -> :class:`ipaddress.IPv4Address` / :class:`ipaddress.IPv6Address`
* AFI 6 / 16389   -> :class:`MacAddress` (the AFI is kept, lispers.net sends 6)
* AFI 8           -> :class:`E164Address` (8 bytes, BCD digits)
* AFI 17          -> :class:`DistinguishedName` (NUL-terminated ASCII)
* AFI 16387       -> an :class:`Lcaf` subclass chosen by LCAF type (``lcaf.py``), or
  :class:`LcafUnknown` holding the raw body, which re-encodes byte-exactly.

``read_address`` / ``write_address`` are the only entry points; LCAF bodies nest
addresses through them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, TypeAlias

from .buffer import Reader, Writer
from .enums import Afi
from .errors import BadAfi, BadLcaf, BadValue, DecodeError


@dataclass(frozen=True, slots=True)
class NoAddress:
    """AFI 0: no address (zero-length body)."""

    def __str__(self) -> str:
        return "(none)"


NO_ADDRESS = NoAddress()


@dataclass(frozen=True, slots=True)
class MacAddress:
    """A 48-bit IEEE MAC address; ``afi`` is 16389 (IANA) or 6 (lispers.net)."""

    value: bytes
    """The six address bytes."""
    afi: int = Afi.MAC
    """The AFI it travels with: 16389, or 6 as lispers.net sends."""

    def __post_init__(self) -> None:
        if len(self.value) != 6:
            raise ValueError("MAC address must be 6 bytes")
        if self.afi not in (Afi.MAC, Afi.MAC_LISPERS):
            raise ValueError(f"MAC AFI must be 16389 or 6, not {self.afi}")

    @classmethod
    def parse(cls, text: str, afi: int = Afi.MAC) -> MacAddress:
        parts = text.replace("-", ":").split(":")
        if len(parts) != 6:
            raise ValueError(f"bad MAC address {text!r}")
        return cls(bytes(int(p, 16) for p in parts), afi)

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.value)


@dataclass(frozen=True, slots=True)
class E164Address:
    """AFI 8: an E.164 number, carried as 8 bytes of packed BCD digits (0xF pads)."""

    value: bytes
    """The eight raw bytes."""

    def __post_init__(self) -> None:
        if len(self.value) != 8:
            raise ValueError("E.164 address must be 8 bytes")

    @classmethod
    def from_digits(cls, digits: str) -> E164Address:
        if not digits.isdigit() or len(digits) > 15:
            raise ValueError(f"bad E.164 number {digits!r}")
        nibbles = [int(d) for d in digits] + [0xF] * (16 - len(digits))
        return cls(bytes((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 16, 2)))

    def __str__(self) -> str:
        out = []
        for b in self.value:
            for n in (b >> 4, b & 0xF):
                if n <= 9:
                    out.append(str(n))
        return "+" + "".join(out)


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """AFI 17: a NUL-terminated ASCII name."""

    name: str
    """The name, without the terminating NUL."""

    def __post_init__(self) -> None:
        if "\x00" in self.name or not self.name.isascii():
            raise ValueError("distinguished name must be ASCII without NUL")

    def __str__(self) -> str:
        return f"'{self.name}'"


class Lcaf(ABC):
    """Base of every LCAF value (AFI 16387).  Subclasses are frozen dataclasses.

    A subclass sets ``lcaf_type`` and implements ``body_from_wire`` (reading from a
    reader restricted to the LCAF Length) and ``body_to_wire``.  ``header_bytes``
    returns (Rsvd1, Flags, Rsvd2) for types that use them.
    """

    __slots__ = ()
    lcaf_type: ClassVar[int] = -1

    @classmethod
    @abstractmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> Lcaf:
        """Decode the body from ``r`` (restricted to the LCAF Length)."""

    @abstractmethod
    def body_to_wire(self, w: Writer) -> None:
        """Encode the body (the common header is written by ``write_address``)."""

    def header_bytes(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def get_type(self) -> int:
        return self.lcaf_type


LCAF_REGISTRY: dict[int, type[Lcaf]] = {}


def register_lcaf(cls: type[Lcaf]) -> type[Lcaf]:
    """Class decorator: make ``read_address`` decode this LCAF type with ``cls``."""
    if cls.lcaf_type in LCAF_REGISTRY:
        raise RuntimeError(f"LCAF type {cls.lcaf_type} registered twice")
    LCAF_REGISTRY[cls.lcaf_type] = cls
    return cls


@dataclass(frozen=True, slots=True)
class LcafUnknown(Lcaf):
    """An LCAF of a type we do not interpret; the raw body survives byte-exactly."""

    type_code: int
    """LCAF type."""
    body: bytes
    """The body (Length bytes) as received."""
    rsvd1: int = 0
    """Rsvd1 byte as received."""
    flags: int = 0
    """Flags byte as received."""
    rsvd2: int = 0
    """Rsvd2 byte as received."""

    def __post_init__(self) -> None:
        if not 0 <= self.type_code <= 255:
            raise ValueError("LCAF type must fit in 8 bits")
        if len(self.body) > 0xFFFF:
            raise ValueError("LCAF body too long")

    def get_type(self) -> int:
        return self.type_code

    def header_bytes(self) -> tuple[int, int, int]:
        return (self.rsvd1, self.flags, self.rsvd2)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> Lcaf:
        raise TypeError("LcafUnknown is built by read_address, which knows the type code")

    def body_to_wire(self, w: Writer) -> None:
        w.write_bytes(self.body)


Address: TypeAlias = NoAddress | IPv4Address | IPv6Address | MacAddress | E164Address | DistinguishedName | Lcaf
"""Any value that can stand where an AFI-encoded address stands."""


def afi_of(addr: Address) -> int:
    """The AFI ``addr`` is encoded with."""
    if isinstance(addr, IPv4Address):
        return Afi.IPV4
    if isinstance(addr, IPv6Address):
        return Afi.IPV6
    if isinstance(addr, Lcaf):
        return Afi.LCAF
    if isinstance(addr, NoAddress):
        return Afi.NONE
    if isinstance(addr, MacAddress):
        return addr.afi
    if isinstance(addr, E164Address):
        return Afi.E164
    if isinstance(addr, DistinguishedName):
        return Afi.DISTINGUISHED_NAME
    raise TypeError(f"not an address: {addr!r}")


MAX_LCAF_DEPTH = 8


def read_address(r: Reader) -> Address:
    """Read one AFI-encoded address (AFI + body); LCAF bodies may nest further addresses."""
    start = r.pos
    afi = r.read_u16("AFI")
    if afi == Afi.IPV4:
        return IPv4Address(r.read_bytes(4, "IPv4 address"))
    if afi == Afi.IPV6:
        return IPv6Address(r.read_bytes(16, "IPv6 address"))
    if afi == Afi.NONE:
        return NO_ADDRESS
    if afi == Afi.LCAF:
        return _read_lcaf(r, start, r.depth)
    if afi in (Afi.MAC, Afi.MAC_LISPERS):
        return MacAddress(r.read_bytes(6, "MAC address"), afi)
    if afi == Afi.E164:
        return E164Address(r.read_bytes(8, "E.164 address"))
    if afi == Afi.DISTINGUISHED_NAME:
        end = r.data.find(b"\x00", r.pos, r.end)
        if end < 0:
            raise r.error(BadValue, "distinguished name has no terminating NUL")
        raw = r.read_bytes(end - r.pos, "distinguished name")
        r.read_u8()
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise r.error(BadValue, "distinguished name is not ASCII", start) from None
        return DistinguishedName(name)
    raise r.error(BadAfi, f"unknown AFI {afi}", start)


def _read_lcaf(r: Reader, start: int, depth: int) -> Lcaf:
    if depth >= MAX_LCAF_DEPTH:
        raise r.error(BadLcaf, "LCAF nested too deeply", start)
    rsvd1 = r.read_u8("LCAF Rsvd1")
    flags = r.read_u8("LCAF Flags")
    ltype = r.read_u8("LCAF Type")
    rsvd2 = r.read_u8("LCAF Rsvd2")
    length = r.read_u16("LCAF Length")
    if length > r.remaining:
        raise r.error(BadLcaf, f"LCAF type {ltype} length {length} exceeds the {r.remaining} byte(s) left", start)
    body = r.sub(length, "LCAF body", overrun=BadLcaf)
    cls = LCAF_REGISTRY.get(ltype)
    if cls is None:
        return LcafUnknown(ltype, body.read_rest(), rsvd1, flags, rsvd2)
    try:
        body.depth = depth + 1
        value = cls.body_from_wire(body, rsvd1, flags, rsvd2)
    except DecodeError:
        raise
    except ValueError as e:
        # a value-class constructor refused a field: the peer sent an invalid body
        raise BadLcaf(f"LCAF type {ltype}: {e}", start, r.msg_type) from None
    if not body.at_end():
        raise BadLcaf(f"LCAF type {ltype}: {body.remaining} unused byte(s) in its body", body.pos, r.msg_type)
    return value


def write_address(w: Writer, addr: Address) -> None:
    """Write ``addr`` as AFI + body."""
    if isinstance(addr, IPv4Address | IPv6Address):
        w.write_u16(Afi.IPV4 if addr.version == 4 else Afi.IPV6)
        w.write_bytes(addr.packed)
    elif isinstance(addr, Lcaf):
        rsvd1, flags, rsvd2 = addr.header_bytes()
        w.write_u16(Afi.LCAF)
        w.write_u8(rsvd1)
        w.write_u8(flags)
        w.write_u8(addr.get_type())
        w.write_u8(rsvd2)
        pos = w.reserve_u16()
        before = len(w)
        addr.body_to_wire(w)
        w.patch_u16(pos, len(w) - before, "LCAF length")
    elif isinstance(addr, NoAddress):
        w.write_u16(Afi.NONE)
    elif isinstance(addr, MacAddress):
        w.write_u16(addr.afi)
        w.write_bytes(addr.value)
    elif isinstance(addr, E164Address):
        w.write_u16(Afi.E164)
        w.write_bytes(addr.value)
    elif isinstance(addr, DistinguishedName):
        w.write_u16(Afi.DISTINGUISHED_NAME)
        w.write_bytes(addr.name.encode("ascii") + b"\x00")
    else:
        raise TypeError(f"not an address: {addr!r}")


def address_bits(addr: Address) -> int:
    """Maximum prefix length for ``addr`` (0 for addresses that have no prefix notion)."""
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    if isinstance(addr, MacAddress):
        return 48
    if isinstance(addr, E164Address):
        return 60
    if isinstance(addr, DistinguishedName):
        return 8 * (len(addr.name) + 1)
    return 0


def address_to_int(addr: Address) -> int:
    """The address as an unsigned integer of ``address_bits`` bits (IP and MAC)."""
    if isinstance(addr, IPv4Address | IPv6Address):
        return int(addr)
    if isinstance(addr, MacAddress):
        return int.from_bytes(addr.value, "big")
    if isinstance(addr, E164Address):
        return int.from_bytes(addr.value, "big") >> 4
    if isinstance(addr, DistinguishedName):
        return int.from_bytes(addr.name.encode("ascii") + b"\x00", "big")
    return 0


def parse_address(text: str) -> Address:
    """Parse an IPv4, IPv6 or MAC address written in the usual text form."""
    from ipaddress import ip_address

    text = text.strip()
    if text.count(":") == 5 and "::" not in text and all(len(p) <= 2 for p in text.split(":")):
        return MacAddress.parse(text)
    try:
        return ip_address(text)
    except ValueError:
        raise ValueError(f"not an IPv4, IPv6 or MAC address: {text!r}") from None


def format_address(addr: Address) -> str:
    return str(addr)
