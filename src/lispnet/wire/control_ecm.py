"""Encapsulated Control Message (type 8), RFC 9301 section 5.8, plus the NAT-traversal
R / N bits and MS-RTR authentication data (draft-ermagan-lisp-nat-traversal).

Layout: a 4-byte header (Type 8, S D E M - R N, 21 reserved bits), the authentication
data when S = 1, then an inner IPv4 or IPv6 header, a UDP header and the inner control
message.  The inner header fields that peers choose (TTL, TOS, identification, flags,
checksums) are kept so a captured ECM re-encodes byte for byte; a freshly built one gets
the IPv4 header checksum computed, UDP checksum 0 over IPv4 and computed over IPv6.

Authentication data (S = 1) is kept raw.  Its length must be known to find the inner IP
header: AD type 2 (MS-RTR) carries it.  AD type 1 (LISP-SEC, RFC 9303) is not decoded
yet and is refused with :class:`UnknownType`.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, ClassVar

from .auth import ECM_AD_MS_RTR, auth_length_ok, ms_rtr_auth_data, verify_ms_rtr_auth
from .buffer import Reader, Writer
from .control_base import ControlBase, check_uint, construct, decode_message, register_control
from .enums import MessageType
from .errors import BadLength, BadValue, DecodeError, TrailingBytes, UnknownType
from .ip import IPAddr, Ipv4Header, Ipv6Header, UdpHeader, build_ip_udp, read_ip_header

if TYPE_CHECKING:
    from .control import ControlMessage

ECM_S = 0x08000000
ECM_D = 0x04000000
ECM_E = 0x02000000
ECM_M = 0x01000000
ECM_R = 0x00400000
ECM_N = 0x00200000

LISP_CONTROL_PORT = 4342


def read_ecm_auth(r: Reader) -> bytes:
    """The raw authentication data following an ECM header with S = 1."""
    start = r.pos
    ad_type = r.peek_u8("ECM AD type")
    if ad_type != ECM_AD_MS_RTR:
        raise r.error(UnknownType, f"ECM authentication data type {ad_type} is not supported", start)
    r.read_u32("ECM AD type/reserved")
    key_id = r.read_u16("MS-RTR key id")
    length = r.read_u16("MS-RTR auth data length")
    if length > r.remaining:
        raise r.error(BadLength, f"MS-RTR auth data length {length} exceeds the {r.remaining} byte(s) left", r.pos - 2)
    if not auth_length_ok(key_id, length):
        raise r.error(BadValue, f"MS-RTR auth data length {length} does not fit key id {key_id}", r.pos - 2)
    r.read_bytes(length, "MS-RTR auth data")
    return bytes(r.data[start : r.pos])


def _check_ecm_auth(auth_data: bytes) -> None:
    r = Reader(auth_data)
    try:
        read_ecm_auth(r)
        r.expect_end("ECM authentication data")
    except DecodeError as e:
        raise ValueError(f"invalid ECM authentication data: {e}") from None


@register_control
@dataclass(frozen=True, slots=True)
class Ecm(ControlBase):
    """An Encapsulated Control Message carrying ``message`` in inner IP/UDP headers."""

    msg_type: ClassVar[int] = MessageType.ECM
    message: ControlMessage
    """The encapsulated control message (never another ECM)."""
    inner_src: IPAddr
    """Inner source: the source EID, or the ITR's RLOC when it has none."""
    inner_dst: IPAddr
    """Inner destination: the requested EID (or the MS / ETR address)."""
    inner_sport: int
    """Inner UDP source port; the Map-Reply goes back to it."""
    inner_dport: int = LISP_CONTROL_PORT
    """Inner UDP destination port (4342)."""
    security: bool = False
    """S: authentication data follows the header."""
    ddt: bool = False
    """D: sent by a DDT Map-Resolver."""
    to_etr: bool = False
    """E: a Map-Server forwards this to an ETR."""
    to_ms: bool = False
    """M: a Map-Resolver forwards this to a Map-Server."""
    rtr: bool = False
    """R (NAT draft): for the RTR to process."""
    relayed: bool = False
    """N (NAT draft): relayed by an RTR."""
    auth_data: bytes = b""
    """Raw authentication data when S = 1 (AD type 2: MS-RTR)."""
    inner_ttl: int = 64
    """Inner IPv4 TTL / IPv6 hop limit (lispers.net 128, OOR 255)."""
    inner_tos: int = 0
    """Inner IPv4 TOS / IPv6 traffic class."""
    inner_ip_id: int = 0
    """Inner IPv4 identification."""
    inner_ip_flags: int = 0
    """Inner IPv4 flags (2 = DF, as OOR sets)."""
    inner_frag_offset: int = 0
    """Inner IPv4 fragment offset."""
    inner_flow_label: int = 0
    """Inner IPv6 flow label."""
    inner_ip_options: bytes = b""
    """Inner IPv4 options, raw."""
    inner_ip_checksum: int | None = None
    """Inner IPv4 header checksum as received when it was wrong; None = computed."""
    inner_udp_checksum: int | None = None
    """Inner UDP checksum; None = 0 over IPv4, computed over IPv6 (OOR sends a computed one over IPv4)."""

    def __post_init__(self) -> None:
        from .control import CONTROL_CLASSES

        if not isinstance(self.message, CONTROL_CLASSES) or isinstance(self.message, Ecm):
            raise TypeError(f"an ECM carries a non-ECM control message, not {self.message!r}")
        if not isinstance(self.inner_src, IPv4Address | IPv6Address) or not isinstance(
            self.inner_dst, IPv4Address | IPv6Address
        ):
            raise TypeError("inner addresses must be IPv4Address or IPv6Address")
        if self.inner_src.version != self.inner_dst.version:
            raise ValueError("inner source and destination must be of one family")
        check_uint("inner_sport", self.inner_sport, 16)
        check_uint("inner_dport", self.inner_dport, 16)
        check_uint("inner_udp_checksum", self.inner_udp_checksum, 16)
        if self.auth_data and not self.security:
            raise ValueError("auth_data needs security=True")
        if self.security:
            _check_ecm_auth(self.auth_data)
        # the inner header classes validate the remaining fields
        hdr = self.ip_header()
        self._canonicalise_checksums(hdr)

    def _canonicalise_checksums(self, hdr: Ipv4Header | Ipv6Header) -> None:
        """Store a checksum equal to the one we would compute as None, as the decoder does,
        so that equal packets give equal values."""
        if self.inner_udp_checksum == 0 and isinstance(hdr, Ipv4Header):
            object.__setattr__(self, "inner_udp_checksum", None)
        needs_ip = isinstance(hdr, Ipv4Header) and self.inner_ip_checksum is not None
        needs_udp = isinstance(hdr, Ipv6Header) and self.inner_udp_checksum is not None
        if not (needs_ip or needs_udp):
            return
        r = Reader(build_ip_udp(hdr, self.udp_header(), self.message.to_bytes()))
        ip, _ = read_ip_header(r)
        udp, _ = UdpHeader.from_wire(r, ip.src, ip.dst)
        if isinstance(ip, Ipv4Header) and ip.checksum is None:
            object.__setattr__(self, "inner_ip_checksum", None)
        if needs_udp and udp.checksum is None:
            object.__setattr__(self, "inner_udp_checksum", None)

    def ip_header(self) -> Ipv4Header | Ipv6Header:
        """The inner IP header this ECM encodes."""
        if isinstance(self.inner_src, IPv4Address) and isinstance(self.inner_dst, IPv4Address):
            return Ipv4Header(
                self.inner_src,
                self.inner_dst,
                ttl=self.inner_ttl,
                tos=self.inner_tos,
                ident=self.inner_ip_id,
                flags=self.inner_ip_flags,
                frag_offset=self.inner_frag_offset,
                options=self.inner_ip_options,
                checksum=self.inner_ip_checksum,
            )
        assert isinstance(self.inner_src, IPv6Address) and isinstance(self.inner_dst, IPv6Address)
        if self.inner_ip_id or self.inner_ip_flags or self.inner_frag_offset or self.inner_ip_options:
            raise ValueError("IPv4-only inner fields set on an IPv6 ECM")
        if self.inner_ip_checksum is not None:
            raise ValueError("an IPv6 header has no checksum")
        return Ipv6Header(
            self.inner_src,
            self.inner_dst,
            hop_limit=self.inner_ttl,
            traffic_class=self.inner_tos,
            flow_label=self.inner_flow_label,
        )

    def udp_header(self) -> UdpHeader:
        return UdpHeader(self.inner_sport, self.inner_dport, self.inner_udp_checksum)

    def to_wire(self, w: Writer) -> None:
        first = (
            (self.msg_type << 28)
            | (ECM_S if self.security else 0)
            | (ECM_D if self.ddt else 0)
            | (ECM_E if self.to_etr else 0)
            | (ECM_M if self.to_ms else 0)
            | (ECM_R if self.rtr else 0)
            | (ECM_N if self.relayed else 0)
        )
        w.write_u32(first)
        w.write_bytes(self.auth_data)
        w.write_bytes(build_ip_udp(self.ip_header(), self.udp_header(), self.message.to_bytes()))

    @classmethod
    def from_wire(cls, r: Reader) -> Ecm:
        start = r.pos
        first = r.read_u32("ECM header")
        auth_data = read_ecm_auth(r) if first & ECM_S else b""
        ip_at = r.pos
        ip, plen = read_ip_header(r)
        if plen > r.remaining:
            raise r.error(BadLength, f"inner IP payload length {plen} exceeds the {r.remaining} byte(s) left", ip_at)
        if plen < r.remaining:
            raise r.error(TrailingBytes, f"{r.remaining - plen} byte(s) after the inner IP payload", r.pos + plen)
        proto = ip.protocol if isinstance(ip, Ipv4Header) else ip.next_header
        if proto != 17:
            raise r.error(BadValue, f"inner IP protocol {proto} is not UDP", ip_at)
        udp_at = r.pos
        udp, ulen = UdpHeader.from_wire(r, ip.src, ip.dst)
        if ulen + 8 != plen:
            raise r.error(BadLength, f"inner UDP length {ulen + 8} differs from the IP payload length {plen}", udp_at + 4)
        if ulen == 0:
            raise r.error(BadLength, "ECM without an inner control message", r.pos)
        inner_r = Reader(r.data, r.pos, r.pos + ulen)
        inner_r.depth = r.depth
        if inner_r.peek_u8("inner message type") >> 4 == MessageType.ECM:
            raise r.error(BadValue, "an ECM inside an ECM", r.pos)
        inner = decode_message(inner_r)
        r.pos = inner_r.pos
        r.expect_end("ECM")
        if isinstance(ip, Ipv4Header):
            v4 = dict(
                inner_ip_id=ip.ident,
                inner_ip_flags=ip.flags,
                inner_frag_offset=ip.frag_offset,
                inner_ip_options=ip.options,
                inner_ip_checksum=ip.checksum,
            )
            ttl, tos, flow = ip.ttl, ip.tos, 0
        else:
            v4 = {}
            ttl, tos, flow = ip.hop_limit, ip.traffic_class, ip.flow_label
        return construct(
            r,
            start,
            cls,
            inner,
            ip.src,
            ip.dst,
            udp.sport,
            udp.dport,
            security=bool(first & ECM_S),
            ddt=bool(first & ECM_D),
            to_etr=bool(first & ECM_E),
            to_ms=bool(first & ECM_M),
            rtr=bool(first & ECM_R),
            relayed=bool(first & ECM_N),
            auth_data=auth_data,
            inner_ttl=ttl,
            inner_tos=tos,
            inner_flow_label=flow,
            inner_udp_checksum=udp.checksum,
            **v4,
        )

    # --- MS-RTR authentication (NAT traversal) -------------------------------------------
    def with_ms_rtr_auth(self, key_id: int, key: bytes, length: int | None = None) -> Ecm:
        """A copy with S = 1 and MS-RTR authentication data over the inner message."""
        from dataclasses import replace

        ad = ms_rtr_auth_data(key_id, key, self.message.to_bytes(), length)
        return replace(self, security=True, auth_data=ad)

    def verify_ms_rtr_auth(self, key: bytes) -> bool:
        """Whether the MS-RTR authentication data matches the inner message under ``key``."""
        return self.security and verify_ms_rtr_auth(self.auth_data, key, self.message.to_bytes())


__all__ = ["Ecm", "read_ecm_auth"]
