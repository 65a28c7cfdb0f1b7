"""LCAF types for NAT traversal, multicast, traffic engineering and keys (RFC 8060, RFC 8061).

* type 7  :class:`LcafNatTraversal`  (RFC 8060 section 4.4; the Info-Reply body)
* type 9  :class:`LcafMulticastInfo` (RFC 8060 section 4.5; flags in Rsvd2)
* type 10 :class:`LcafElp`           (RFC 8060 section 4.6; a list of :class:`ElpHop`)
* type 11 :class:`LcafSecurityKey`   (RFC 8060 section 4.7, RFC 8061 section 4)
* type 13 :class:`LcafRle`           (RFC 8060 section 4.9; a list of :class:`RleEntry`)
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import NO_ADDRESS, Address, DistinguishedName, Lcaf, read_address, register_lcaf, write_address
from .buffer import Reader, Writer
from .enums import Afi, LcafType
from .errors import BadValue
from .lcaf_common import (
    build,
    check_address,
    check_bool,
    check_bytes,
    check_mask_len,
    check_tuple,
    check_uint,
)

# RFC 8060 section 4.4: NAT-Traversal


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafNatTraversal(Lcaf):
    """Type 7 (RFC 8060 section 4.4): what a Map-Server saw of an ETR behind a NAT, plus the RTRs.

    Any address may be AFI 0.  The RTR list runs to the end of the body.
    """

    lcaf_type = LcafType.NAT_TRAVERSAL
    ms_port: int
    """MS UDP port number."""
    etr_port: int
    """ETR UDP port number: the translated source port the Map-Server saw."""
    global_etr_rloc: Address = NO_ADDRESS
    """The ETR's RLOC as the Map-Server saw it (outside the NAT)."""
    ms_rloc: Address = NO_ADDRESS
    """The Map-Server's RLOC."""
    private_etr_rloc: Address = NO_ADDRESS
    """The ETR's own (private) RLOC."""
    rtr_rlocs: tuple[Address, ...] = ()
    """RTR RLOCs the ETR may use, in wire order."""

    def __post_init__(self) -> None:
        check_uint("ms_port", self.ms_port, 16)
        check_uint("etr_port", self.etr_port, 16)
        check_address("global_etr_rloc", self.global_etr_rloc)
        check_address("ms_rloc", self.ms_rloc)
        check_address("private_etr_rloc", self.private_etr_rloc)
        check_tuple("rtr_rlocs", self.rtr_rlocs)
        for i, a in enumerate(self.rtr_rlocs):
            check_address(f"rtr_rlocs[{i}]", a)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafNatTraversal:
        ms_port = r.read_u16("MS UDP port")
        etr_port = r.read_u16("ETR UDP port")
        global_etr = read_address(r)
        ms = read_address(r)
        private_etr = read_address(r)
        rtrs: list[Address] = []
        while not r.at_end():
            rtrs.append(read_address(r))
        return cls(ms_port, etr_port, global_etr, ms, private_etr, tuple(rtrs))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u16(self.ms_port, "MS UDP port")
        w.write_u16(self.etr_port, "ETR UDP port")
        write_address(w, self.global_etr_rloc)
        write_address(w, self.ms_rloc)
        write_address(w, self.private_etr_rloc)
        for a in self.rtr_rlocs:
            write_address(w, a)


# RFC 8060 section 4.5: Multicast Info

MCAST_RP = 0x04
MCAST_LEAVE = 0x02
MCAST_JOIN = 0x01


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafMulticastInfo(Lcaf):
    """Type 9 (RFC 8060 section 4.5): an (S,G) or (*,G) multicast EID, with R/L/J flags in Rsvd2.

    A source of AFI 0, or a source mask-len of 0, means "*".
    """

    lcaf_type = LcafType.MULTICAST_INFO
    iid: int
    """Instance-id of the group (32 bits)."""
    source: Address
    """Source (or source subnet) address."""
    source_mask_len: int
    """Source mask length."""
    group: Address
    """Group address."""
    group_mask_len: int
    """Group mask length."""
    rp: bool = False
    """R (0x04): RP / shared tree."""
    leave: bool = False
    """L (0x02): leave."""
    join: bool = False
    """J (0x01): join."""

    def __post_init__(self) -> None:
        check_uint("iid", self.iid, 32)
        check_address("source", self.source)
        check_address("group", self.group)
        check_mask_len("source_mask_len", self.source_mask_len, self.source)
        check_mask_len("group_mask_len", self.group_mask_len, self.group)
        check_bool("rp", self.rp)
        check_bool("leave", self.leave)
        check_bool("join", self.join)

    def header_bytes(self) -> tuple[int, int, int]:
        bits = (
            (MCAST_RP if self.rp else 0)
            | (MCAST_LEAVE if self.leave else 0)
            | (MCAST_JOIN if self.join else 0)
        )
        return (0, 0, bits)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafMulticastInfo:
        start = r.pos
        iid = r.read_u32("instance-id")
        r.read_u16("multicast reserved")
        sml = r.read_u8("source mask-len")
        gml = r.read_u8("group mask-len")
        source = read_address(r)
        group = read_address(r)
        return build(
            r,
            start,
            lambda: cls(
                iid,
                source,
                sml,
                group,
                gml,
                rp=bool(rsvd2 & MCAST_RP),
                leave=bool(rsvd2 & MCAST_LEAVE),
                join=bool(rsvd2 & MCAST_JOIN),
            ),
        )

    def body_to_wire(self, w: Writer) -> None:
        w.write_u32(self.iid, "instance-id")
        w.write_u16(0)
        w.write_u8(self.source_mask_len)
        w.write_u8(self.group_mask_len)
        write_address(w, self.source)
        write_address(w, self.group)

    def __str__(self) -> str:
        return f"[{self.iid}]({self.source}/{self.source_mask_len}, {self.group}/{self.group_mask_len})"


# RFC 8060 section 4.6: Explicit Locator Path

ELP_LOOKUP = 0x0004
ELP_PROBE = 0x0002
ELP_STRICT = 0x0001


@dataclass(frozen=True, slots=True)
class ElpHop:
    """One re-encapsulation hop of an ELP: 16 bits of flags, then the AFI-encoded address."""

    address: Address
    """The reencapsulating tunnel router (or, last, the ETR)."""
    lookup: bool = False
    """L (0x0004): the previous hop looks this address up in the mapping system."""
    probe: bool = False
    """P (0x0002): RLOC-probe this hop."""
    strict: bool = False
    """S (0x0001): this hop must be used."""

    def __post_init__(self) -> None:
        check_address("address", self.address)
        check_bool("lookup", self.lookup)
        check_bool("probe", self.probe)
        check_bool("strict", self.strict)

    @property
    def flags(self) -> int:
        """The 16-bit hop flags word (reserved bits zero)."""
        return (
            (ELP_LOOKUP if self.lookup else 0)
            | (ELP_PROBE if self.probe else 0)
            | (ELP_STRICT if self.strict else 0)
        )

    def __str__(self) -> str:
        marks = "".join(c for c, on in (("l", self.lookup), ("p", self.probe), ("s", self.strict)) if on)
        return f"{self.address}{'(' + marks + ')' if marks else ''}"


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafElp(Lcaf):
    """Type 10 (RFC 8060 section 4.6): an explicit locator path, hops in path order.

    Each hop is flags first, then the AFI (as lispers.net and OOR send it; an early draft,
    and old Wireshark, put the AFI first).
    """

    lcaf_type = LcafType.EXPLICIT_LOCATOR_PATH
    hops: tuple[ElpHop, ...] = ()
    """The hops; the ITR encapsulates to the first, the last is the ETR."""

    def __post_init__(self) -> None:
        check_tuple("hops", self.hops, ElpHop)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafElp:
        hops: list[ElpHop] = []
        while not r.at_end():
            bits = r.read_u16("ELP hop flags")
            address = read_address(r)
            hops.append(
                ElpHop(address, bool(bits & ELP_LOOKUP), bool(bits & ELP_PROBE), bool(bits & ELP_STRICT))
            )
        return cls(tuple(hops))

    def body_to_wire(self, w: Writer) -> None:
        for hop in self.hops:
            w.write_u16(hop.flags, "ELP hop flags")
            write_address(w, hop.address)

    def __str__(self) -> str:
        return "(" + " -> ".join(str(h) for h in self.hops) + ")"


# RFC 8060 section 4.7 and RFC 8061 section 4: Security Key

SECURITY_KEY_REKEY = 0x01


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafSecurityKey(Lcaf):
    """Type 11 (RFC 8061 section 4): a public key (e.g. X25519) bound to a locator.

    The body always carries one Key Length + key (the LCAF length table is 6 + key + address);
    ``key_count`` is carried as sent (lispers.net sends 1).
    """

    lcaf_type = LcafType.SECURITY_KEY
    key_count: int
    """Key Count (8 bits)."""
    cipher_suite: int
    """Cipher suite number (RFC 8061 section 6: 1..6 defined)."""
    rekey: bool = False
    """R: rekey indication (low bit of the fourth byte)."""
    key: bytes = b""
    """The public key material (its length is derived on encode)."""
    address: Address = NO_ADDRESS
    """The locator the key belongs to (AFI 0 for none)."""

    def __post_init__(self) -> None:
        check_uint("key_count", self.key_count, 8)
        check_uint("cipher_suite", self.cipher_suite, 8)
        check_bool("rekey", self.rekey)
        check_bytes("key", self.key)
        check_address("address", self.address)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafSecurityKey:
        key_count = r.read_u8("key count")
        r.read_u8("security key reserved")
        cipher_suite = r.read_u8("cipher suite")
        bits = r.read_u8("security key flags")
        key_len = r.read_u16("key length")
        key = r.read_bytes(key_len, "key material")
        return cls(key_count, cipher_suite, bool(bits & SECURITY_KEY_REKEY), key, read_address(r))

    def body_to_wire(self, w: Writer) -> None:
        w.write_u8(self.key_count, "key count")
        w.write_u8(0)
        w.write_u8(self.cipher_suite, "cipher suite")
        w.write_u8(SECURITY_KEY_REKEY if self.rekey else 0)
        w.write_u16(len(self.key), "key length")
        w.write_bytes(self.key)
        write_address(w, self.address)


# RFC 8060 section 4.9: Replication List Entry


@dataclass(frozen=True, slots=True)
class RleEntry:
    """One replication target of an RLE: 3 reserved bytes, the level, then the address.

    ``name`` models lispers.net's extension: an AFI 17 name right after the address.
    """

    address: Address
    """The RTR or ETR to replicate to."""
    level: int = 0
    """Replication level (8 bits); an ITR replicates to the lowest level."""
    name: str | None = None
    """Optional name sent as an AFI 17 address after ``address`` (lispers.net extension)."""

    def __post_init__(self) -> None:
        check_address("address", self.address)
        check_uint("level", self.level, 8)
        if self.name is not None:
            DistinguishedName(self.name)  # same rules: ASCII, no NUL

    def __str__(self) -> str:
        return f"{self.address}(L{self.level}{' ' + self.name if self.name is not None else ''})"


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafRle(Lcaf):
    """Type 13 (RFC 8060 section 4.9): the replication list of a multicast mapping.

    A name after an entry's address is recognized by its AFI (17) where the next entry's
    reserved field would start; senders put zero there, so the two cannot be confused.
    """

    lcaf_type = LcafType.REPLICATION_LIST
    entries: tuple[RleEntry, ...] = ()
    """The entries in wire order."""

    def __post_init__(self) -> None:
        check_tuple("entries", self.entries, RleEntry)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafRle:
        entries: list[RleEntry] = []
        while not r.at_end():
            r.read_u16("RLE reserved")
            r.read_u8("RLE reserved")
            level = r.read_u8("RLE level")
            address = read_address(r)
            name: str | None = None
            if r.remaining >= 2 and r.peek_u16() == Afi.DISTINGUISHED_NAME:
                at = r.pos
                dn = read_address(r)
                if not isinstance(dn, DistinguishedName):  # pragma: no cover - AFI 17 is always a name
                    raise r.error(BadValue, "RLE entry name is not a distinguished name", at)
                name = dn.name
            entries.append(RleEntry(address, level, name))
        return cls(tuple(entries))

    def body_to_wire(self, w: Writer) -> None:
        for e in self.entries:
            w.write_u16(0)
            w.write_u8(0)
            w.write_u8(e.level, "RLE level")
            write_address(w, e.address)
            if e.name is not None:
                write_address(w, DistinguishedName(e.name))

    def __str__(self) -> str:
        return "(" + ", ".join(str(e) for e in self.entries) + ")"
