"""Hypothesis strategies for every control message class (valid values only).

Addresses come from ``strategies_lcaf.addresses`` when that module (another engineer's)
provides it; otherwise simple IPv4 / IPv6 / MAC / name / Instance-ID values are used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import strategies as st

from lispnet.wire import (
    Ecm,
    InfoReply,
    InfoRequest,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    ReferralRecord,
    RequestRecord,
    SharedExtension,
    UnknownControl,
)
from lispnet.wire.address import NO_ADDRESS, Address, DistinguishedName, MacAddress, address_bits
from lispnet.wire.auth import ms_rtr_auth_data
from lispnet.wire.enums import Action, AuthAlg, ReferralAction
from lispnet.wire.lcaf import LcafInstanceId, LcafNatTraversal
from lispnet.wire.records import EidRecord, LocatorRecord

_lcaf_addresses: Callable[[], st.SearchStrategy[Address]] | None
try:  # pragma: no cover - depends on the LCAF engineer's module
    from strategies_lcaf import addresses as _lcaf_addresses
except Exception as e:  # pragma: no cover - optional: fall back to simple addresses, but say so
    warnings.warn(f"strategies_lcaf unusable ({e!r}); control strategies use simple addresses", stacklevel=1)
    _lcaf_addresses = None

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
u128 = st.integers(0, (1 << 128) - 1)

ipv4 = st.builds(IPv4Address, u32)
ipv6 = st.builds(IPv6Address, u128)
ip = st.one_of(ipv4, ipv6)
mac = st.builds(MacAddress, st.binary(min_size=6, max_size=6), st.sampled_from([16389, 6]))
name = st.builds(DistinguishedName, st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=20))

plain_address: st.SearchStrategy[Address] = st.one_of(ipv4, ipv6, mac, name, st.just(NO_ADDRESS))
if _lcaf_addresses is not None:  # pragma: no cover
    rloc_address: st.SearchStrategy[Address] = st.one_of(ipv4, ipv6, _lcaf_addresses())
else:
    rloc_address = st.one_of(ipv4, ipv6, st.builds(LcafInstanceId, u32, ip, u8))


MREQ_FLAGS = (
    "authoritative",
    "probe",
    "smr",
    "pitr",
    "smr_invoked",
    "mobile_node",
    "local_xtr",
    "dont_map_reply",
)
MREG_FLAGS = ("proxy_reply", "lisp_sec", "want_map_notify", "merge", "use_ttl", "eid_notify", "mobile_node")
ECM_FLAGS = ("ddt", "to_etr", "to_ms", "rtr", "relayed")


def flags(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, bool]]:
    return st.fixed_dictionaries({n: st.booleans() for n in names})


@st.composite
def eid_and_mask(draw: Any) -> tuple[Address, int]:
    """An (EID as on the wire, mask-len) pair that is a valid prefix."""
    inner = draw(plain_address)
    bits = address_bits(inner)
    mask = draw(st.integers(0, bits if bits else 255))
    if draw(st.booleans()):
        return LcafInstanceId(draw(u32), inner, draw(st.sampled_from([0, 24, 32]))), mask
    return inner, mask


locator = st.builds(
    LocatorRecord,
    rloc_address,
    u8,
    u8,
    u8,
    u8,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@st.composite
def eid_record(draw: Any) -> EidRecord:
    eid, mask = draw(eid_and_mask())
    return EidRecord(
        eid,
        mask,
        tuple(draw(st.lists(locator, max_size=3))),
        draw(u32),
        Action(draw(st.integers(0, 7))),
        draw(st.booleans()),
        draw(st.integers(0, 0xFFF)),
    )


@st.composite
def request_record(draw: Any) -> RequestRecord:
    eid, mask = draw(eid_and_mask())
    return RequestRecord(eid, mask, draw(st.booleans()))


@st.composite
def trailer_ids(draw: Any) -> tuple[int | None, int | None]:
    xtr = draw(st.none() | u128)
    site = draw(st.none() | u64) if xtr is not None else None
    return xtr, site


@st.composite
def auth_fields(draw: Any) -> tuple[int, int, bytes]:
    alg = draw(st.sampled_from([0, 1, 2, 9]))
    if alg == 0:
        data = b""
    elif alg == 1:
        data = draw(st.just(b"") | st.binary(min_size=12, max_size=20))
    elif alg == 2:
        data = draw(st.just(b"") | st.binary(min_size=16, max_size=32))
    else:
        data = draw(st.binary(max_size=40))
    return draw(u8), alg, data


@st.composite
def map_request(draw: Any) -> MapRequest:
    xtr, site = draw(trailer_ids())
    return MapRequest(
        draw(u64),
        draw(st.one_of(plain_address, st.builds(LcafInstanceId, u32, ip))),
        tuple(draw(st.lists(rloc_address, min_size=1, max_size=4))),
        tuple(draw(st.lists(request_record(), max_size=3))),
        **draw(flags(MREQ_FLAGS)),
        map_reply_record=draw(st.none() | eid_record()),
        xtr_id=xtr,
        site_id=site,
        nat_xtr=draw(st.booleans()),
    )


@st.composite
def map_reply(draw: Any) -> MapReply:
    security = draw(st.booleans())
    return MapReply(
        draw(u64),
        tuple(draw(st.lists(eid_record(), max_size=3))),
        draw(st.booleans()),
        draw(st.booleans()),
        security,
        draw(st.binary(max_size=24)) if security else b"",
    )


@st.composite
def map_register(draw: Any) -> MapRegister:
    key_id, alg, data = draw(auth_fields())
    xtr, site = draw(trailer_ids())
    return MapRegister(
        draw(u64),
        tuple(draw(st.lists(eid_record(), max_size=3))),
        key_id,
        AuthAlg(alg),
        data,
        xtr_id=xtr,
        site_id=site,
        **draw(flags(MREG_FLAGS)),
    )


@st.composite
def _notify(draw: Any, cls: type[MapNotify] | type[MapNotifyAck]) -> MapNotify | MapNotifyAck:
    key_id, alg, data = draw(auth_fields())
    xtr, site = draw(trailer_ids())
    return cls(
        draw(u64),
        tuple(draw(st.lists(eid_record(), max_size=3))),
        key_id,
        AuthAlg(alg),
        data,
        xtr,
        site,
        draw(st.booleans()),
        draw(st.booleans()) if xtr is not None else False,
    )


def map_notify() -> st.SearchStrategy[MapNotify | MapNotifyAck]:
    return _notify(MapNotify)


def map_notify_ack() -> st.SearchStrategy[MapNotify | MapNotifyAck]:
    return _notify(MapNotifyAck)


@st.composite
def referral_record(draw: Any) -> ReferralRecord:
    eid, mask = draw(eid_and_mask())
    return ReferralRecord(
        eid,
        mask,
        tuple(draw(st.lists(locator, max_size=3))),
        draw(u32),
        ReferralAction(draw(st.integers(0, 7))),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.integers(0, 0xFFF)),
    )


map_referral = st.builds(MapReferral, u64, st.lists(referral_record(), max_size=3).map(tuple))


@st.composite
def info_request(draw: Any) -> InfoRequest:
    eid, mask = draw(eid_and_mask())
    key_id, alg, data = draw(auth_fields())
    hostname = draw(st.none() | st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=16))
    return InfoRequest(draw(u64), eid, mask, draw(u32), key_id, AuthAlg(alg), data, hostname)


@st.composite
def info_reply(draw: Any) -> InfoReply:
    eid, mask = draw(eid_and_mask())
    key_id, alg, data = draw(auth_fields())
    nat = st.builds(
        LcafNatTraversal,
        u16,
        u16,
        st.one_of(ip, st.just(NO_ADDRESS)),
        st.one_of(ip, st.just(NO_ADDRESS)),
        st.one_of(ip, st.just(NO_ADDRESS)),
        st.lists(ip, max_size=3).map(tuple),
    )
    return InfoReply(draw(u64), eid, mask, draw(u32), key_id, AuthAlg(alg), data, draw(nat | rloc_address))


shared_extension = st.builds(SharedExtension, st.integers(0, 0xFFF), st.binary(max_size=32))


@st.composite
def unknown_control(draw: Any) -> UnknownControl:
    t = draw(st.sampled_from([0, 9, 10, 11, 12, 13, 14]))
    first = (t << 4) | draw(st.integers(0, 15))
    return UnknownControl(t, bytes([first]) + draw(st.binary(max_size=32)))


def inner_message() -> st.SearchStrategy[Any]:
    return st.one_of(
        map_request(), map_reply(), map_register(), map_notify(), map_notify_ack(), info_request(), info_reply()
    )


@st.composite
def ecm(draw: Any) -> Ecm:
    v6 = draw(st.booleans())
    addr = ipv6 if v6 else ipv4
    msg = draw(inner_message())
    security = draw(st.booleans())
    auth = b""
    if security:
        key_id = draw(st.sampled_from([1, 2]))
        auth = ms_rtr_auth_data(key_id, draw(st.binary(max_size=8)), msg.to_bytes())
    v4_fields: dict[str, Any] = {}
    if not v6:
        v4_fields = dict(
            inner_ip_id=draw(u16),
            inner_ip_flags=draw(st.integers(0, 7)),
            inner_frag_offset=draw(st.integers(0, 0x1FFF)),
            inner_ip_options=draw(st.sampled_from([b"", b"\x01\x01\x01\x00"])),
            inner_ip_checksum=draw(st.none() | u16),
        )
    return Ecm(
        msg,
        draw(addr),
        draw(addr),
        draw(u16),
        draw(u16),
        security,
        **draw(flags(ECM_FLAGS)),
        auth_data=auth,
        inner_ttl=draw(u8),
        inner_tos=draw(u8),
        inner_flow_label=draw(st.integers(0, 0xFFFFF)) if v6 else 0,
        inner_udp_checksum=draw(st.none() | u16),
        **v4_fields,
    )


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "MapRequest": map_request(),
    "MapReply": map_reply(),
    "MapRegister": map_register(),
    "MapNotify": map_notify(),
    "MapNotifyAck": map_notify_ack(),
    "MapReferral": map_referral,
    "InfoRequest": info_request(),
    "InfoReply": info_reply(),
    "Ecm": ecm(),
    "SharedExtension": shared_extension,
    "UnknownControl": unknown_control(),
}

any_control: st.SearchStrategy[Any] = st.one_of(*STRATEGIES.values())
