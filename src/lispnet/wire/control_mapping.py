"""Map-Request, Map-Reply, Map-Register, Map-Notify and Map-Notify-Ack (RFC 9301 section 5).

Layouts are in docs (shared/spec/control-plane.md sections 5-8).  Counts (IRC, Record
Count) are derived on encode; flags are named booleans; reserved bits are written as 0
and ignored on receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .address import NO_ADDRESS, Address, read_address, write_address
from .auth import AUTH_DATA_OFFSET
from .buffer import Reader, Writer
from .control_base import (
    MIN_ADDRESS,
    MIN_REQUEST_RECORD,
    XTR_ID_LEN,
    AuthMixin,
    ControlBase,
    as_tuple,
    check_auth,
    check_count,
    check_prefix,
    check_records,
    check_trailer_ids,
    check_uint,
    checked_prefix,
    construct,
    read_auth,
    read_eid_record,
    read_eid_records,
    read_trailer_ids,
    register_control,
    write_auth,
    write_trailer_ids,
)
from .enums import AuthAlg, MessageType
from .errors import UnknownType
from .prefix import EidPrefix
from .records import EidRecord

# --- Map-Request (RFC 9301 section 5.2) --------------------------------------------------

MREQ_A = 0x08000000
MREQ_M = 0x04000000
MREQ_P = 0x02000000
MREQ_S = 0x01000000
MREQ_PITR = 0x00800000
MREQ_SMR_INVOKED = 0x00400000
MREQ_R = 0x00200000
MREQ_I = 0x00100000
MREQ_NAT_XTR = 0x00008000
MREQ_L = 0x00004000
MREQ_D = 0x00002000
REQ_RECORD_N = 0x80


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One EID record of a Map-Request: the prefix asked for."""

    eid: Address
    """The EID (an Instance-ID LCAF when the instance-id is not 0)."""
    mask_len: int
    """EID mask-len (host length for a miss on one destination)."""
    notify: bool = False
    """N (RFC 9437): subscribe to changes of this prefix (lispers.net sends 0x80)."""

    def __post_init__(self) -> None:
        if not 0 <= self.mask_len <= 255:
            raise ValueError("mask-len must fit in 8 bits")
        check_prefix(self.eid, self.mask_len)

    @property
    def prefix(self) -> EidPrefix:
        return EidPrefix.from_wire_eid(self.eid, self.mask_len)

    @classmethod
    def for_prefix(cls, prefix: EidPrefix, notify: bool = False) -> RequestRecord:
        return cls(prefix.to_wire_eid(), prefix.mask_len, notify)

    @classmethod
    def from_wire(cls, r: Reader) -> RequestRecord:
        start = r.pos
        rsvd = r.read_u8("request record reserved")
        mask_len = r.read_u8("request record mask-len")
        eid = read_address(r)
        checked_prefix(r, eid, mask_len, start + 1)
        return cls(eid, mask_len, bool(rsvd & REQ_RECORD_N))

    def to_wire(self, w: Writer) -> None:
        w.write_u8(REQ_RECORD_N if self.notify else 0)
        w.write_u8(self.mask_len)
        write_address(w, self.eid)


@register_control
@dataclass(frozen=True, slots=True)
class MapRequest(ControlBase):
    """Map-Request (type 1), including SMRs and RLOC-probes."""

    msg_type: ClassVar[int] = MessageType.MAP_REQUEST
    nonce: int
    """64-bit nonce, echoed in the Map-Reply."""
    source_eid: Address = NO_ADDRESS
    """Source-EID (AFI 0 allowed, e.g. for RLOC-probes)."""
    itr_rlocs: tuple[Address, ...] = ()
    """Where replies may go: 1..32 addresses (IRC is derived)."""
    records: tuple[RequestRecord, ...] = ()
    """The EID records requested (senders use one)."""
    authoritative: bool = False
    """A: only the owning site should answer."""
    probe: bool = False
    """P: RLOC-probe."""
    smr: bool = False
    """S: Solicit-Map-Request."""
    pitr: bool = False
    """p: sent by a PITR (its source EID means nothing)."""
    smr_invoked: bool = False
    """s: this request answers an SMR."""
    mobile_node: bool = False
    """R: reserved in RFC 9301; lispers.net's mobile-node bit."""
    local_xtr: bool = False
    """L: the sender is an xTR of the receiver's site."""
    dont_map_reply: bool = False
    """D: the receiver must not send a Map-Reply."""
    map_reply_record: EidRecord | None = None
    """M: the sender's own mapping (unverified hint)."""
    xtr_id: int | None = None
    """I (RFC 9437): 128-bit xTR-ID appended after the records."""
    site_id: int | None = None
    """64-bit site-ID after the xTR-ID (lispers.net omits it)."""
    nat_xtr: bool = False
    """N (0x8000): lispers.net-private "decent NAT xTR" bit, kept for byte-exact re-encoding."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        as_tuple(self, "itr_rlocs")
        as_tuple(self, "records")
        if len(self.itr_rlocs) > 32:
            raise ValueError("at most 32 ITR-RLOCs")
        if len(self.records) > 255:
            raise ValueError("at most 255 records")
        for rec in self.records:
            if not isinstance(rec, RequestRecord):
                raise TypeError(f"not a RequestRecord: {rec!r}")
        if self.map_reply_record is not None:
            check_records((self.map_reply_record,))
        check_trailer_ids(self.xtr_id, self.site_id)

    def to_wire(self, w: Writer) -> None:
        if not self.itr_rlocs:
            raise ValueError("a Map-Request needs at least one ITR-RLOC")
        first = (
            (self.msg_type << 28)
            | (MREQ_A if self.authoritative else 0)
            | (MREQ_M if self.map_reply_record is not None else 0)
            | (MREQ_P if self.probe else 0)
            | (MREQ_S if self.smr else 0)
            | (MREQ_PITR if self.pitr else 0)
            | (MREQ_SMR_INVOKED if self.smr_invoked else 0)
            | (MREQ_R if self.mobile_node else 0)
            | (MREQ_I if self.xtr_id is not None else 0)
            | (MREQ_NAT_XTR if self.nat_xtr else 0)
            | (MREQ_L if self.local_xtr else 0)
            | (MREQ_D if self.dont_map_reply else 0)
            | ((len(self.itr_rlocs) - 1) << 8)
            | len(self.records)
        )
        w.write_u32(first)
        w.write_u64(self.nonce)
        write_address(w, self.source_eid)
        for rloc in self.itr_rlocs:
            write_address(w, rloc)
        for rec in self.records:
            rec.to_wire(w)
        if self.map_reply_record is not None:
            self.map_reply_record.to_wire(w)
        write_trailer_ids(w, self.xtr_id, self.site_id)

    @classmethod
    def from_wire(cls, r: Reader) -> MapRequest:
        start = r.pos
        first = r.read_u32("Map-Request header")
        irc = ((first >> 8) & 0x1F) + 1
        count = first & 0xFF
        nonce = r.read_u64("nonce")
        source_eid = read_address(r)
        check_count(r, irc, MIN_ADDRESS, "ITR-RLOC", start + 2)
        itr_rlocs = tuple(read_address(r) for _ in range(irc))
        check_count(r, count, MIN_REQUEST_RECORD, "record", start + 3)
        records = tuple(RequestRecord.from_wire(r) for _ in range(count))
        mr_record = read_eid_record(r) if first & MREQ_M else None
        xtr_id = site_id = None
        if first & MREQ_I:
            xtr_id, site_id = read_trailer_ids(r, "Map-Request")
        r.expect_end("Map-Request")
        return construct(
            r,
            start,
            cls,
            nonce,
            source_eid,
            itr_rlocs,
            records,
            authoritative=bool(first & MREQ_A),
            probe=bool(first & MREQ_P),
            smr=bool(first & MREQ_S),
            pitr=bool(first & MREQ_PITR),
            smr_invoked=bool(first & MREQ_SMR_INVOKED),
            mobile_node=bool(first & MREQ_R),
            local_xtr=bool(first & MREQ_L),
            dont_map_reply=bool(first & MREQ_D),
            map_reply_record=mr_record,
            xtr_id=xtr_id,
            site_id=site_id,
            nat_xtr=bool(first & MREQ_NAT_XTR),
        )


# --- Map-Reply (RFC 9301 section 5.4) ------------------------------------------------------

MREP_P = 0x08000000
MREP_E = 0x04000000
MREP_S = 0x02000000


@register_control
@dataclass(frozen=True, slots=True)
class MapReply(ControlBase):
    """Map-Reply (type 2): positive, negative, or an RLOC-probe reply."""

    msg_type: ClassVar[int] = MessageType.MAP_REPLY
    nonce: int
    """Copied from the Map-Request."""
    records: tuple[EidRecord, ...] = ()
    """The mapping records."""
    probe: bool = False
    """P: RLOC-probe reply."""
    echo_nonce_capable: bool = False
    """E: the ETR does echo-nonce."""
    security: bool = False
    """S: a LISP-SEC section (RFC 9303) follows the records."""
    security_data: bytes = b""
    """The LISP-SEC bytes after the records, kept raw."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        as_tuple(self, "records")
        check_records(self.records)
        if self.security_data and not self.security:
            raise ValueError("security_data needs security=True")

    def to_wire(self, w: Writer) -> None:
        first = (
            (self.msg_type << 28)
            | (MREP_P if self.probe else 0)
            | (MREP_E if self.echo_nonce_capable else 0)
            | (MREP_S if self.security else 0)
            | len(self.records)
        )
        w.write_u32(first)
        w.write_u64(self.nonce)
        for rec in self.records:
            rec.to_wire(w)
        w.write_bytes(self.security_data)

    @classmethod
    def from_wire(cls, r: Reader) -> MapReply:
        start = r.pos
        first = r.read_u32("Map-Reply header")
        nonce = r.read_u64("nonce")
        records = read_eid_records(r, first & 0xFF, start + 3)
        security_data = r.read_rest() if first & MREP_S else b""
        r.expect_end("Map-Reply")
        return construct(
            r,
            start,
            cls,
            nonce,
            records,
            probe=bool(first & MREP_P),
            echo_nonce_capable=bool(first & MREP_E),
            security=bool(first & MREP_S),
            security_data=security_data,
        )


# --- Map-Register (RFC 9301 section 5.6) ---------------------------------------------------

MREG_P = 0x08000000
MREG_S = 0x04000000
MREG_I = 0x02000000
MREG_LISPERS_ENCRYPTED = 0x00002000  # lispers.net "e": the body is ChaCha20-encrypted
MREG_E = 0x00001000
MREG_T = 0x00000800
MREG_MERGE = 0x00000400
MREG_R = 0x00000200
MREG_M = 0x00000100


@register_control
@dataclass(frozen=True, slots=True)
class MapRegister(ControlBase, AuthMixin):
    """Map-Register (type 3): an ETR registers its mappings with a Map-Server."""

    msg_type: ClassVar[int] = MessageType.MAP_REGISTER
    nonce: int
    """Random when want-map-notify, echoed in the Map-Notify."""
    records: tuple[EidRecord, ...]
    """The mappings registered."""
    key_id: int = 0
    """Which pre-shared key (8 bits)."""
    alg_id: int = AuthAlg.HMAC_SHA_256_128
    """HMAC algorithm (1 = SHA-1, 2 = SHA-256)."""
    auth_data: bytes = b""
    """Authentication data (empty until ``signed``)."""
    proxy_reply: bool = False
    """P: the Map-Server answers Map-Requests itself."""
    lisp_sec: bool = False
    """S: the ETR is LISP-SEC capable."""
    want_map_notify: bool = False
    """M: acknowledge with a Map-Notify."""
    merge: bool = False
    """a: merge the RLOC sets of all registering xTRs."""
    use_ttl: bool = False
    """T: time the registration out after the Record TTL."""
    eid_notify: bool = False
    """E (RFC 9301; lispers.net uses the bit as map-register-refresh)."""
    mobile_node: bool = False
    """R: reserved in RFC 9301; lispers.net's mobile-node bit."""
    xtr_id: int | None = None
    """I: 128-bit xTR-ID after the records."""
    site_id: int | None = None
    """64-bit site-ID after the xTR-ID."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        as_tuple(self, "records")
        check_records(self.records)
        check_auth(self.key_id, self.alg_id, self.auth_data)
        check_trailer_ids(self.xtr_id, self.site_id)

    def to_wire(self, w: Writer) -> None:
        first = (
            (self.msg_type << 28)
            | (MREG_P if self.proxy_reply else 0)
            | (MREG_S if self.lisp_sec else 0)
            | (MREG_I if self.xtr_id is not None else 0)
            | (MREG_E if self.eid_notify else 0)
            | (MREG_T if self.use_ttl else 0)
            | (MREG_MERGE if self.merge else 0)
            | (MREG_R if self.mobile_node else 0)
            | (MREG_M if self.want_map_notify else 0)
            | len(self.records)
        )
        w.write_u32(first)
        w.write_u64(self.nonce)
        write_auth(w, self.key_id, self.alg_id, self.auth_data)
        for rec in self.records:
            rec.to_wire(w)
        write_trailer_ids(w, self.xtr_id, self.site_id)

    @classmethod
    def from_wire(cls, r: Reader) -> MapRegister:
        start = r.pos
        first = r.read_u32("Map-Register header")
        if first & MREG_LISPERS_ENCRYPTED:
            raise r.error(UnknownType, "encrypted Map-Register (lispers.net extension) is not supported", start)
        nonce = r.read_u64("nonce")
        key_id, alg_id, auth_data = read_auth(r)
        records = read_eid_records(r, first & 0xFF, start + 3)
        xtr_id = site_id = None
        if first & MREG_I:
            xtr_id, site_id = read_trailer_ids(r, "Map-Register")
        r.expect_end("Map-Register")
        return construct(
            r,
            start,
            cls,
            nonce,
            records,
            key_id,
            AuthAlg(alg_id),
            auth_data,
            proxy_reply=bool(first & MREG_P),
            lisp_sec=bool(first & MREG_S),
            want_map_notify=bool(first & MREG_M),
            merge=bool(first & MREG_MERGE),
            use_ttl=bool(first & MREG_T),
            eid_notify=bool(first & MREG_E),
            mobile_node=bool(first & MREG_R),
            xtr_id=xtr_id,
            site_id=site_id,
        )


# --- Map-Notify / Map-Notify-Ack (RFC 9301 section 5.7) -----------------------------------

MNOT_I = 0x08000000
MNOT_R = 0x04000000


@dataclass(frozen=True, slots=True)
class _NotifyBase(ControlBase, AuthMixin):
    nonce: int
    """Copied from the Map-Register it acknowledges, or fresh when unsolicited."""
    records: tuple[EidRecord, ...]
    """The mappings notified."""
    key_id: int = 0
    """Which pre-shared key (8 bits)."""
    alg_id: int = AuthAlg.HMAC_SHA_256_128
    """HMAC algorithm (1 = SHA-1, 2 = SHA-256)."""
    auth_data: bytes = b""
    """Authentication data (empty until ``signed``)."""
    xtr_id: int | None = None
    """I: 128-bit xTR-ID after the records (NAT traversal, pub/sub)."""
    site_id: int | None = None
    """64-bit site-ID after the xTR-ID."""
    rtr_auth: bool = False
    """R: RTR authentication data present (NAT traversal)."""
    unflagged_xtr_id: bool = False
    """xTR-ID/site-ID appended without the I bit, as lispers.net sends them; kept to re-encode exactly."""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        as_tuple(self, "records")
        check_records(self.records)
        check_auth(self.key_id, self.alg_id, self.auth_data)
        check_trailer_ids(self.xtr_id, self.site_id)
        if self.unflagged_xtr_id and self.xtr_id is None:
            raise ValueError("unflagged_xtr_id needs an xtr_id")

    def to_wire(self, w: Writer) -> None:
        i_bit = self.xtr_id is not None and not self.unflagged_xtr_id
        first = (
            (self.msg_type << 28) | (MNOT_I if i_bit else 0) | (MNOT_R if self.rtr_auth else 0) | len(self.records)
        )
        w.write_u32(first)
        w.write_u64(self.nonce)
        write_auth(w, self.key_id, self.alg_id, self.auth_data)
        for rec in self.records:
            rec.to_wire(w)
        write_trailer_ids(w, self.xtr_id, self.site_id)

    @classmethod
    def from_wire(cls, r: Reader) -> _NotifyBase:
        start = r.pos
        name = "Map-Notify-Ack" if cls.msg_type == MessageType.MAP_NOTIFY_ACK else "Map-Notify"
        first = r.read_u32(f"{name} header")
        nonce = r.read_u64("nonce")
        key_id, alg_id, auth_data = read_auth(r)
        records = read_eid_records(r, first & 0xFF, start + 3)
        xtr_id = site_id = None
        unflagged = False
        if first & MNOT_I:
            xtr_id, site_id = read_trailer_ids(r, name)
        elif r.remaining >= XTR_ID_LEN:
            xtr_id, site_id = read_trailer_ids(r, name)
            unflagged = True
        r.expect_end(name)
        return construct(
            r,
            start,
            cls,
            nonce,
            records,
            key_id,
            AuthAlg(alg_id),
            auth_data,
            xtr_id,
            site_id,
            bool(first & MNOT_R),
            unflagged,
        )


@register_control
@dataclass(frozen=True, slots=True)
class MapNotify(_NotifyBase):
    """Map-Notify (type 4): acknowledges a Map-Register, or tells xTRs of a change."""

    msg_type: ClassVar[int] = MessageType.MAP_NOTIFY


@register_control
@dataclass(frozen=True, slots=True)
class MapNotifyAck(_NotifyBase):
    """Map-Notify-Ack (type 5): an xTR acknowledges an unsolicited Map-Notify."""

    msg_type: ClassVar[int] = MessageType.MAP_NOTIFY_ACK


__all__ = [
    "AUTH_DATA_OFFSET",
    "MapNotify",
    "MapNotifyAck",
    "MapRegister",
    "MapReply",
    "MapRequest",
    "RequestRecord",
]
