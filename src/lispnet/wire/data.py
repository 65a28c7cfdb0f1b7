"""Data-plane headers: the LISP header (RFC 9300 section 5.3) and the VXLAN family.

Every header here is 8 bytes long and sits right after the outer UDP header; the
encapsulated packet follows it.  The values are frozen and validated on construction,
like the control messages, so an invalid header cannot be built.

Two code paths read and write the same layout:

* ``from_wire(reader)`` / ``to_wire(writer)`` go through the bounds-checked cursor,
  like every other codec in ``lispnet.wire``;
* ``from_bytes`` / ``to_bytes`` / ``parse_data_header`` are the per-packet fast path:
  they do one precompiled ``struct`` unpack of the two 32-bit words.  Both paths decode
  the same words with the same function (``_lisp_from_words``), so they cannot drift.

Receiving (RFC 9300 section 5.3): a decapsulating ETR accepts any flag combination it
understands and ignores reserved bits.  Concretely the decoder

* ignores E when N is clear ("MUST be ignored by the ETR"),
* reads the 24-bit field as a nonce when both N and V are set (N wins),
* ignores the R/P bit (RFC 9305's LISP-GPE P bit; not interpreted here), the nonce
  field when neither N nor V is set, and the LSB field when L is clear.

So any 8 bytes decode to a header, and a header we build re-encodes byte-exactly; only
those ignored bits do not survive a round trip.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeAlias

from .buffer import Reader, Writer
from .errors import BadValue, Truncated

HEADER_LEN = 8
"""Every header in this module is two 32-bit words."""

PORT_LISP_DATA = 4341
PORT_LISP_CONTROL = 4342
PORT_LISP_L2 = 8472
"""lispers.net "L2 LISP": a LISP header followed by an Ethernet frame (also Linux's old VXLAN port)."""
PORT_VXLAN = 4789
PORT_VXLAN_GPE = 4790

# LISP header, first word (RFC 9300 section 5.3)
N_BIT = 0x80000000
L_BIT = 0x40000000
E_BIT = 0x20000000
V_BIT = 0x10000000
I_BIT = 0x08000000
R_BIT = 0x04000000
KK_MASK = 0x03000000
LOW24 = 0x00FFFFFF

MAX_IID = 0xFFFFFF
MAX_MAP_VERSION = 0xFFF

_WORDS = struct.Struct("!II")


def _field(name: str, v: int, bits: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if not 0 <= v < (1 << bits):
        raise ValueError(f"{name}={v} does not fit in {bits} bits")


class _TwoWords(ABC):
    """Shared encoding of the 8-byte headers: subclasses give ``words()``."""

    __slots__ = ()

    @abstractmethod
    def words(self) -> tuple[int, int]:
        """The two 32-bit words of the header."""

    def to_bytes(self) -> bytes:
        return _WORDS.pack(*self.words())

    def to_wire(self, w: Writer) -> None:
        w1, w2 = self.words()
        w.write_u32(w1)
        w.write_u32(w2)


@dataclass(frozen=True, slots=True)
class LispHeader(_TwoWords):
    """The 8-byte LISP data header (RFC 9300 section 5.3; map-version from RFC 9302).

    The flag bits are derived from the fields: N = ``nonce is not None``, L = ``lsb is
    not None``, V = ``map_version is not None``, I = ``instance_id is not None``.
    """

    nonce: int | None = None
    """24-bit nonce (N bit); echoed back for echo-nonce."""
    lsb: int | None = None
    """Locator-Status-Bits (L bit): 32 bits when there is no instance-id, 8 bits with one."""
    echo_nonce_request: bool = False
    """E: ask the ETR to echo this nonce back (only with a nonce)."""
    map_version: tuple[int, int] | None = None
    """(Source Map-Version, Dest Map-Version), 12 bits each (V bit, RFC 9302); excludes a nonce."""
    instance_id: int | None = None
    """24-bit instance-id (I bit), the EID's VPN / VNI."""
    key_id: int = 0
    """KK: LISP-crypto key (RFC 8061): 0 = not encrypted, 1..3 = which key."""

    def __post_init__(self) -> None:
        if self.nonce is not None:
            _field("nonce", self.nonce, 24)
        if self.instance_id is not None:
            _field("instance_id", self.instance_id, 24)
        if self.lsb is not None:
            _field("lsb", self.lsb, 32 if self.instance_id is None else 8)
        if self.map_version is not None:
            if self.nonce is not None:
                raise ValueError("a LISP header cannot carry both a nonce (N) and a map-version (V)")
            if not isinstance(self.map_version, tuple) or len(self.map_version) != 2:
                raise TypeError("map_version must be a (source, dest) tuple")
            _field("source map-version", self.map_version[0], 12)
            _field("dest map-version", self.map_version[1], 12)
        if self.echo_nonce_request and self.nonce is None:
            raise ValueError("echo_nonce_request (E) needs a nonce (N)")
        _field("key_id", self.key_id, 2)

    # --- flags, for display -------------------------------------------------------

    @property
    def flags(self) -> str:
        """The set flag letters in header order, e.g. ``"NI"`` (``"-"`` for none)."""
        w1, _ = self.words()
        s = "".join(c for c, bit in zip("NLEVI", (N_BIT, L_BIT, E_BIT, V_BIT, I_BIT), strict=True) if w1 & bit)
        return s or "-"

    # --- encoding -------------------------------------------------------------------

    def words(self) -> tuple[int, int]:
        """The two 32-bit words of the header."""
        w1 = self.key_id << 24
        if self.nonce is not None:
            w1 |= N_BIT | self.nonce
            if self.echo_nonce_request:
                w1 |= E_BIT
        elif self.map_version is not None:
            w1 |= V_BIT | (self.map_version[0] << 12) | self.map_version[1]
        if self.lsb is not None:
            w1 |= L_BIT
        if self.instance_id is not None:
            w1 |= I_BIT
            w2 = (self.instance_id << 8) | (self.lsb or 0)
        else:
            w2 = self.lsb or 0
        return w1, w2

    # --- decoding -------------------------------------------------------------------

    @classmethod
    def from_wire(cls, r: Reader) -> LispHeader:
        """Read the header from the cursor (the encapsulated packet stays in ``r``)."""
        w1 = r.read_u32("LISP header word 1")
        w2 = r.read_u32("LISP header word 2")
        return _lisp_from_words(w1, w2)

    @classmethod
    def from_bytes(cls, data: bytes) -> LispHeader:
        """Decode exactly 8 bytes (use :func:`parse_data_header` for a whole packet)."""
        if len(data) != HEADER_LEN:
            if len(data) < HEADER_LEN:
                raise Truncated(f"LISP header: need 8 bytes, got {len(data)}", 0)
            r = Reader(data, HEADER_LEN)
            r.expect_end("LISP header")
        return _lisp_from_words(*_WORDS.unpack(data))


# Decoding fills the slots directly instead of going through ``__init__``: every field
# comes out of a mask of the right width and the N/V/E rules hold by construction, so
# the constructor's checks cannot fail here, and skipping them makes the per-packet
# decode about a third cheaper.  Building a header yourself always validates.
_new = object.__new__
_SET_NONCE = LispHeader.__dict__["nonce"].__set__
_SET_LSB = LispHeader.__dict__["lsb"].__set__
_SET_ECHO = LispHeader.__dict__["echo_nonce_request"].__set__
_SET_MV = LispHeader.__dict__["map_version"].__set__
_SET_IID = LispHeader.__dict__["instance_id"].__set__
_SET_KEY = LispHeader.__dict__["key_id"].__set__


def _lisp_from_words(w1: int, w2: int) -> LispHeader:
    """Decode the two words with the receive rules in the module docstring (total)."""
    h: LispHeader = _new(LispHeader)
    if w1 & I_BIT:
        _SET_IID(h, w2 >> 8)
        _SET_LSB(h, w2 & 0xFF if w1 & L_BIT else None)
    else:
        _SET_IID(h, None)
        _SET_LSB(h, w2 if w1 & L_BIT else None)
    if w1 & N_BIT:
        _SET_NONCE(h, w1 & LOW24)
        _SET_ECHO(h, bool(w1 & E_BIT))
        _SET_MV(h, None)
    else:
        _SET_NONCE(h, None)
        _SET_ECHO(h, False)
        _SET_MV(h, ((w1 >> 12) & 0xFFF, w1 & 0xFFF) if w1 & V_BIT else None)
    _SET_KEY(h, (w1 >> 24) & 3)
    return h


def parse_data_header(data: bytes) -> LispHeader:
    """The LISP header at the start of a UDP-4341 payload; the inner packet is ``data[8:]``.

    Raises only :class:`~lispnet.wire.errors.DecodeError` (``Truncated`` under 8 bytes).
    """
    if len(data) < HEADER_LEN:
        raise Truncated(f"LISP header: need 8 bytes, got {len(data)}", 0)
    return _lisp_from_words(*_WORDS.unpack_from(data))


def split_data_packet(data: bytes) -> tuple[LispHeader, bytes]:
    """(header, encapsulated packet) of a UDP-4341 payload."""
    return parse_data_header(data), bytes(data[HEADER_LEN:])


# --- VXLAN family --------------------------------------------------------------------
#
# RFC 7348 (VXLAN), draft-ietf-nvo3-vxlan-gpe (GPE), draft-smith-vxlan-group-policy
# (GBP).  The VNI sits where the LISP instance-id does (the top 24 bits of word 2).

VXLAN_I_FLAG = 0x08000000
"""I: the VNI is valid; must be set in VXLAN, GPE and GBP."""
GBP_G_FLAG = 0x80000000
GBP_D_FLAG = 0x00400000
GBP_A_FLAG = 0x00080000
GPE_VER_MASK = 0x30000000
GPE_P_FLAG = 0x04000000
GPE_B_FLAG = 0x02000000
GPE_O_FLAG = 0x01000000


class GpeNextProtocol(IntEnum):
    """VXLAN-GPE Next Protocol values."""

    IPV4 = 1
    IPV6 = 2
    ETHERNET = 3
    NSH = 4
    MPLS = 5


def _vni_from(w2: int, w1: int, what: str) -> int:
    if not w1 & VXLAN_I_FLAG:
        raise BadValue(f"{what}: I flag clear, no valid VNI", 0)
    return w2 >> 8


@dataclass(frozen=True, slots=True)
class VxlanHeader(_TwoWords):
    """The VXLAN header (RFC 7348 section 5): flags with I set, and the 24-bit VNI."""

    vni: int
    """VXLAN Network Identifier (24 bits)."""

    def __post_init__(self) -> None:
        _field("vni", self.vni, 24)

    def words(self) -> tuple[int, int]:
        return VXLAN_I_FLAG, self.vni << 8

    @classmethod
    def from_words(cls, w1: int, w2: int) -> VxlanHeader:
        # reserved bits (including a GBP G bit) are ignored on receive
        return cls(_vni_from(w2, w1, "VXLAN"))

    @classmethod
    def from_wire(cls, r: Reader) -> VxlanHeader:
        start = r.pos
        w1 = r.read_u32("VXLAN flags")
        w2 = r.read_u32("VXLAN VNI")
        if not w1 & VXLAN_I_FLAG:
            raise r.error(BadValue, "VXLAN: I flag clear, no valid VNI", start)
        return cls(w2 >> 8)

    @classmethod
    def from_bytes(cls, data: bytes) -> VxlanHeader:
        return cls.from_words(*_exact_words(data, "VXLAN header"))


@dataclass(frozen=True, slots=True)
class VxlanGpeHeader(_TwoWords):
    """The VXLAN-GPE header (draft-ietf-nvo3-vxlan-gpe, UDP 4790)."""

    vni: int
    """VXLAN Network Identifier (24 bits)."""
    next_protocol: int | None
    """Next Protocol (P bit set): 1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH; None = P clear."""
    oam: bool = False
    """O: the payload is an OAM packet."""
    bum: bool = False
    """B: broadcast, unknown-unicast or multicast traffic."""
    version: int = 0
    """Ver: 2-bit version, 0 today."""

    def __post_init__(self) -> None:
        _field("vni", self.vni, 24)
        if self.next_protocol is not None:
            _field("next_protocol", self.next_protocol, 8)
        _field("version", self.version, 2)

    def words(self) -> tuple[int, int]:
        w1 = VXLAN_I_FLAG | (self.version << 28)
        if self.next_protocol is not None:
            w1 |= GPE_P_FLAG | self.next_protocol
        if self.bum:
            w1 |= GPE_B_FLAG
        if self.oam:
            w1 |= GPE_O_FLAG
        return w1, self.vni << 8

    @classmethod
    def from_words(cls, w1: int, w2: int) -> VxlanGpeHeader:
        vni = _vni_from(w2, w1, "VXLAN-GPE")
        np = w1 & 0xFF if w1 & GPE_P_FLAG else None
        return cls(vni, np, bool(w1 & GPE_O_FLAG), bool(w1 & GPE_B_FLAG), (w1 & GPE_VER_MASK) >> 28)

    @classmethod
    def from_wire(cls, r: Reader) -> VxlanGpeHeader:
        start = r.pos
        w1 = r.read_u32("VXLAN-GPE flags")
        w2 = r.read_u32("VXLAN-GPE VNI")
        if not w1 & VXLAN_I_FLAG:
            raise r.error(BadValue, "VXLAN-GPE: I flag clear, no valid VNI", start)
        return cls.from_words(w1, w2)

    @classmethod
    def from_bytes(cls, data: bytes) -> VxlanGpeHeader:
        return cls.from_words(*_exact_words(data, "VXLAN-GPE header"))


@dataclass(frozen=True, slots=True)
class VxlanGbpHeader(_TwoWords):
    """The VXLAN Group Based Policy header (draft-smith-vxlan-group-policy, UDP 4789, G set)."""

    vni: int
    """VXLAN Network Identifier (24 bits)."""
    group_policy_id: int
    """16-bit group tag of the source endpoint."""
    dont_learn: bool = False
    """D: the egress VTEP must not learn the source address."""
    policy_applied: bool = False
    """A: the group policy was already applied upstream."""

    def __post_init__(self) -> None:
        _field("vni", self.vni, 24)
        _field("group_policy_id", self.group_policy_id, 16)

    def words(self) -> tuple[int, int]:
        w1 = GBP_G_FLAG | VXLAN_I_FLAG | self.group_policy_id
        if self.dont_learn:
            w1 |= GBP_D_FLAG
        if self.policy_applied:
            w1 |= GBP_A_FLAG
        return w1, self.vni << 8

    @classmethod
    def from_words(cls, w1: int, w2: int) -> VxlanGbpHeader:
        if not w1 & GBP_G_FLAG:
            raise BadValue("VXLAN-GBP: G flag clear, no group policy id", 0)
        vni = _vni_from(w2, w1, "VXLAN-GBP")
        return cls(vni, w1 & 0xFFFF, bool(w1 & GBP_D_FLAG), bool(w1 & GBP_A_FLAG))

    @classmethod
    def from_wire(cls, r: Reader) -> VxlanGbpHeader:
        start = r.pos
        w1 = r.read_u32("VXLAN-GBP flags")
        w2 = r.read_u32("VXLAN-GBP VNI")
        if not w1 & GBP_G_FLAG:
            raise r.error(BadValue, "VXLAN-GBP: G flag clear, no group policy id", start)
        if not w1 & VXLAN_I_FLAG:
            raise r.error(BadValue, "VXLAN-GBP: I flag clear, no valid VNI", start)
        return cls.from_words(w1, w2)

    @classmethod
    def from_bytes(cls, data: bytes) -> VxlanGbpHeader:
        return cls.from_words(*_exact_words(data, "VXLAN-GBP header"))


def _exact_words(data: bytes, what: str) -> tuple[int, int]:
    if len(data) != HEADER_LEN:
        if len(data) < HEADER_LEN:
            raise Truncated(f"{what}: need 8 bytes, got {len(data)}", 0)
        Reader(data, HEADER_LEN).expect_end(what)
    w1, w2 = _WORDS.unpack(data)
    return w1, w2


VxlanKind: TypeAlias = Literal["vxlan", "gpe", "gbp", "auto"]
"""How to read a VXLAN-family header: ``auto`` is UDP 4789 (GBP when G is set, else VXLAN)."""

AnyVxlanHeader: TypeAlias = VxlanHeader | VxlanGpeHeader | VxlanGbpHeader
DataHeader: TypeAlias = LispHeader | VxlanHeader | VxlanGpeHeader | VxlanGbpHeader
"""Any 8-byte data-plane header of this module."""


def parse_vxlan(data: bytes, kind: VxlanKind = "auto") -> AnyVxlanHeader:
    """The VXLAN-family header at the start of ``data`` (the inner frame follows it).

    ``kind`` is ``"vxlan"`` (RFC 7348; the G bit is then just reserved), ``"gbp"``,
    ``"gpe"`` (UDP 4790) or ``"auto"`` (UDP 4789: GBP when G is set).  Raises only
    ``DecodeError``: ``Truncated`` below 8 bytes, ``BadValue`` when I (or G for GBP) is clear.
    """
    if len(data) < HEADER_LEN:
        raise Truncated(f"VXLAN header: need 8 bytes, got {len(data)}", 0)
    w1, w2 = _WORDS.unpack_from(data)
    if kind == "gpe":
        return VxlanGpeHeader.from_words(w1, w2)
    if kind == "gbp" or (kind == "auto" and w1 & GBP_G_FLAG):
        return VxlanGbpHeader.from_words(w1, w2)
    if kind in ("vxlan", "auto"):
        return VxlanHeader.from_words(w1, w2)
    raise ValueError(f"unknown VXLAN kind {kind!r}")


__all__ = [
    "AnyVxlanHeader",
    "DataHeader",
    "GpeNextProtocol",
    "HEADER_LEN",
    "LispHeader",
    "PORT_LISP_CONTROL",
    "PORT_LISP_DATA",
    "PORT_LISP_L2",
    "PORT_VXLAN",
    "PORT_VXLAN_GPE",
    "VxlanGbpHeader",
    "VxlanGpeHeader",
    "VxlanHeader",
    "VxlanKind",
    "parse_data_header",
    "parse_vxlan",
    "split_data_packet",
]
