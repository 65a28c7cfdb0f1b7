"""LCAF bodies (RFC 8060).  One frozen value class per type, registered by type code.

This module holds the simple types and imports the others so that importing
``lispnet.wire.lcaf`` registers every type: geo coordinates (both type-5 layouts) live in
``lcaf_geo.py``; NAT traversal, multicast info, ELP, security key and RLE in ``lcaf_te.py``.

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
from .lcaf_common import (
    build,
    check_address,
    check_bool,
    check_bytes,
    check_mask_len,
    check_tuple,
    check_uint,
)
from .lcaf_geo import NO_ALTITUDE, LcafGeoCoordinates, LcafGeoPoint
from .lcaf_te import ElpHop, LcafElp, LcafMulticastInfo, LcafNatTraversal, LcafRle, LcafSecurityKey, RleEntry

__all__ = [
    "NO_ALTITUDE",
    "ElpHop",
    "LcafAfiList",
    "LcafApplicationData",
    "LcafAsNumber",
    "LcafElp",
    "LcafEncapFormat",
    "LcafGeoCoordinates",
    "LcafGeoPoint",
    "LcafInstanceId",
    "LcafJson",
    "LcafKeyValue",
    "LcafMulticastInfo",
    "LcafNatTraversal",
    "LcafNonceLocator",
    "LcafNull",
    "LcafOpaqueKey",
    "LcafRle",
    "LcafSecurityKey",
    "LcafSourceDest",
    "LcafVendor",
    "RleEntry",
]

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


# RFC 8060 section 3: the Null Body type


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafNull(Lcaf):
    """Type 0 (RFC 8060 section 3): an LCAF with no body, a placeholder for "unspecified"."""

    lcaf_type = LcafType.NULL

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafNull:
        # address.py refuses any body byte left unread, so a non-empty body is BadLcaf
        return cls()

    def body_to_wire(self, w: Writer) -> None:
        return None

    def __str__(self) -> str:
        return "(null-lcaf)"


# RFC 8060 sections 3 and 4.10: AFI List


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafAfiList(Lcaf):
    """Type 1 (RFC 8060 sections 3, 4.10): several addresses naming one thing (e.g. IPv4 + IPv6 + name)."""

    lcaf_type = LcafType.AFI_LIST
    addresses: tuple[Address, ...] = ()
    """The AFI-encoded entries in wire order; an entry may itself be an LCAF."""

    def __post_init__(self) -> None:
        check_tuple("addresses", self.addresses)
        for i, a in enumerate(self.addresses):
            check_address(f"addresses[{i}]", a)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafAfiList:
        out: list[Address] = []
        while not r.at_end():
            out.append(read_address(r))
        return cls(tuple(out))

    def body_to_wire(self, w: Writer) -> None:
        for a in self.addresses:
            write_address(w, a)

    def __str__(self) -> str:
        return "(" + ", ".join(str(a) for a in self.addresses) + ")"


# RFC 8060 section 4.2: AS Number


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafAsNumber(Lcaf):
    """Type 3 (RFC 8060 section 4.2): an address tagged with the AS it belongs to."""

    lcaf_type = LcafType.AS_NUMBER
    asn: int
    """The 32-bit AS number."""
    address: Address = NO_ADDRESS
    """The address in that AS (AFI 0 for an AS number alone)."""

    def __post_init__(self) -> None:
        check_uint("asn", self.asn, 32)
        check_address("address", self.address)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafAsNumber:
        asn = r.read_u32("AS number")
        return cls(asn, read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u32(self.asn, "AS number")
        write_address(w, self.address)

    def __str__(self) -> str:
        return f"AS{self.asn}:{self.address}"


# RFC 8060 section 5.1: Application Data


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafApplicationData(Lcaf):
    """Type 4 (RFC 8060 section 5.1): an address qualified by a flow (TOS/label, protocol, ports).

    The body is 12 bytes of fields then the address, as RFC 8060 draws it (lispers.net's
    length table assumes 8; we follow the RFC).
    """

    lcaf_type = LcafType.APPLICATION_DATA
    tos_flow_label: int
    """IPv4 TOS, IPv6 traffic class or flow label (24 bits)."""
    protocol: int
    """IP protocol number (8 bits)."""
    local_port_low: int
    """Lower end of the local port range."""
    local_port_high: int
    """Upper end of the local port range."""
    remote_port_low: int
    """Lower end of the remote port range."""
    remote_port_high: int
    """Upper end of the remote port range."""
    address: Address = NO_ADDRESS
    """The address the flow applies to."""

    def __post_init__(self) -> None:
        check_uint("tos_flow_label", self.tos_flow_label, 24)
        check_uint("protocol", self.protocol, 8)
        for name in ("local_port_low", "local_port_high", "remote_port_low", "remote_port_high"):
            check_uint(name, getattr(self, name), 16)
        check_address("address", self.address)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafApplicationData:
        tos = r.read_u24("TOS / flow label")
        proto = r.read_u8("protocol")
        ports = [
            r.read_u16(what)
            for what in ("local port low", "local port high", "remote port low", "remote port high")
        ]
        return cls(tos, proto, ports[0], ports[1], ports[2], ports[3], read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u24(self.tos_flow_label, "TOS / flow label")
        w.write_u8(self.protocol, "protocol")
        w.write_u16(self.local_port_low)
        w.write_u16(self.local_port_high)
        w.write_u16(self.remote_port_low)
        w.write_u16(self.remote_port_high)
        write_address(w, self.address)


# RFC 8060 section 5.2: Opaque Key


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafOpaqueKey(Lcaf):
    """Type 6 (RFC 8060 section 5.2): an application-defined lookup key, kept as raw bytes.

    No implementation we can compare against parses this body, so it is carried opaquely.
    """

    lcaf_type = LcafType.OPAQUE_KEY
    body: bytes = b""
    """The whole body as received / to send (Key Field Num, wildcards, key, address)."""

    def __post_init__(self) -> None:
        check_bytes("body", self.body)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafOpaqueKey:
        return cls(r.read_rest())

    def body_to_wire(self, w: Writer) -> None:
        w.write_bytes(self.body)


# RFC 8060 section 5.3: Nonce Locator


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafNonceLocator(Lcaf):
    """Type 8 (RFC 8060 section 5.3): a locator bound to a 24-bit nonce."""

    lcaf_type = LcafType.NONCE_LOCATOR
    nonce: int
    """The 24-bit nonce."""
    address: Address = NO_ADDRESS
    """The locator."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 24)
        check_address("address", self.address)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafNonceLocator:
        r.read_u8("nonce reserved")
        nonce = r.read_u24("nonce")
        return cls(nonce, read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u8(0)
        w.write_u24(self.nonce, "nonce")
        write_address(w, self.address)


# RFC 8060 section 4.8: Source/Dest Key


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafSourceDest(Lcaf):
    """Type 12 (RFC 8060 section 4.8): an (S, D) EID for source-specific mappings."""

    lcaf_type = LcafType.SOURCE_DEST_KEY
    source: Address
    """The source prefix address."""
    source_mask_len: int
    """Source prefix length."""
    dest: Address
    """The destination prefix address."""
    dest_mask_len: int
    """Destination prefix length."""

    def __post_init__(self) -> None:
        check_address("source", self.source)
        check_address("dest", self.dest)
        check_mask_len("source_mask_len", self.source_mask_len, self.source)
        check_mask_len("dest_mask_len", self.dest_mask_len, self.dest)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafSourceDest:
        start = r.pos
        r.read_u16("source-dest reserved")
        sml = r.read_u8("source mask-len")
        dml = r.read_u8("dest mask-len")
        src = read_address(r)
        dst = read_address(r)
        return build(r, start, lambda: cls(src, sml, dst, dml))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u16(0)
        w.write_u8(self.source_mask_len)
        w.write_u8(self.dest_mask_len)
        write_address(w, self.source)
        write_address(w, self.dest)

    def __str__(self) -> str:
        return f"({self.source}/{self.source_mask_len}, {self.dest}/{self.dest_mask_len})"


# RFC 8060 section 5.4: JSON Data Model

JSON_BINARY = 0x01
"""B bit in Rsvd2 of the JSON LCAF: the JSON field is a binary encoding."""


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafJson(Lcaf):
    """Type 14 (RFC 8060 section 5.4): JSON text (or binary JSON) plus an optional address.

    Only the B bit of Rsvd2 is interpreted; lispers.net's private bits there are ignored on
    receive and sent as zero.
    """

    lcaf_type = LcafType.JSON_DATA_MODEL
    json_text: bytes
    """The JSON field as bytes (UTF-8 text, or a binary encoding when ``binary``)."""
    binary: bool = False
    """B bit: the JSON field is binary-encoded."""
    address: Address = NO_ADDRESS
    """The optional address after the JSON (AFI 0 when absent)."""

    def __post_init__(self) -> None:
        check_bytes("json_text", self.json_text)
        check_bool("binary", self.binary)
        check_address("address", self.address)

    def header_bytes(self) -> tuple[int, int, int]:
        return (0, 0, JSON_BINARY if self.binary else 0)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafJson:
        n = r.read_u16("JSON length")
        text = r.read_bytes(n, "JSON text")
        return cls(text, bool(rsvd2 & JSON_BINARY), read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u16(len(self.json_text), "JSON length")
        w.write_bytes(self.json_text)
        write_address(w, self.address)


# RFC 8060 section 5.5: Key/Value Address Pair


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafKeyValue(Lcaf):
    """Type 15 (RFC 8060 section 5.5): a key address mapped to a value address."""

    lcaf_type = LcafType.KEY_VALUE_PAIR
    key: Address
    """The key address."""
    value: Address
    """The value address."""

    def __post_init__(self) -> None:
        check_address("key", self.key)
        check_address("value", self.value)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafKeyValue:
        key = read_address(r)
        return cls(key, read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        write_address(w, self.key)
        write_address(w, self.value)

    def __str__(self) -> str:
        return f"{self.key}=>{self.value}"


# RFC 8060 section 5.6: Encapsulation Format

ENCAP_LISP = 0x01
ENCAP_LISP_GPE = 0x02
ENCAP_VXLAN = 0x04
ENCAP_VXLAN_GPE = 0x08
ENCAP_NVGRE = 0x10
ENCAP_GENEVE = 0x20
ENCAP_GUE = 0x40

_ENCAP_BITS: tuple[tuple[str, int], ...] = (
    ("lisp", ENCAP_LISP),
    ("lisp_gpe", ENCAP_LISP_GPE),
    ("vxlan", ENCAP_VXLAN),
    ("vxlan_gpe", ENCAP_VXLAN_GPE),
    ("nvgre", ENCAP_NVGRE),
    ("geneve", ENCAP_GENEVE),
    ("gue", ENCAP_GUE),
)


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafEncapFormat(Lcaf):
    """Type 16 (RFC 8060 section 5.6): which data-plane encapsulations the address accepts (low 7 bits of a 32-bit word).

    The bit assignment (L lowest, then l, V, v, N, G, U) is single-source; reserved bits are
    ignored on receive and sent as zero.
    """

    lcaf_type = LcafType.ENCAPSULATION_FORMAT
    lisp: bool = False
    """L: LISP (RFC 9300) encapsulation."""
    lisp_gpe: bool = False
    """l: LISP-GPE."""
    vxlan: bool = False
    """V: VXLAN."""
    vxlan_gpe: bool = False
    """v: VXLAN-GPE."""
    nvgre: bool = False
    """N: NVGRE."""
    geneve: bool = False
    """G: GENEVE."""
    gue: bool = False
    """U: GUE."""
    address: Address = NO_ADDRESS
    """The locator these formats apply to."""

    def __post_init__(self) -> None:
        check_address("address", self.address)
        for name, _ in _ENCAP_BITS:
            check_bool(name, getattr(self, name))

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafEncapFormat:
        bits = r.read_u32("encapsulation flags")
        addr = read_address(r)
        return cls(**{name: bool(bits & mask) for name, mask in _ENCAP_BITS}, address=addr)

    def body_to_wire(self, w: Writer) -> None:
        bits = 0
        for name, mask in _ENCAP_BITS:
            if getattr(self, name):
                bits |= mask
        w.write_u32(bits, "encapsulation flags")
        write_address(w, self.address)


# RFC 8389: Vendor Specific


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafVendor(Lcaf):
    """Type 255 (RFC 8389): vendor-defined bytes under an IEEE OUI."""

    lcaf_type = LcafType.VENDOR_SPECIFIC
    oui: int
    """The 24-bit Organizationally Unique Identifier."""
    data: bytes = b""
    """The vendor-defined bytes after the OUI."""

    def __post_init__(self) -> None:
        check_uint("oui", self.oui, 24)
        check_bytes("data", self.data, 0xFFFF - 4)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafVendor:
        r.read_u8("vendor reserved")
        oui = r.read_u24("OUI")
        return cls(oui, r.read_rest())

    def body_to_wire(self, w: Writer) -> None:
        w.write_u8(0)
        w.write_u24(self.oui, "OUI")
        w.write_bytes(self.data)
