"""Hypothesis strategies for addresses and every LCAF value class (valid values only).

Reusable by other test modules (this directory is on ``sys.path`` under pytest's default
import mode, so ``from strategies_lcaf import any_address`` works):

* ``ip_addresses()``      IPv4 or IPv6
* ``simple_addresses()``  every non-LCAF address (NoAddress, IPv4, IPv6, MAC with AFI 16389
  and 6, E.164, distinguished name)
* ``lcaf_values(depth)``  every LCAF class (and ``LcafUnknown``), at most ``depth`` LCAF levels
  deep counting itself (``depth=1``: nested addresses are simple)
* ``any_address(depth)``  simple addresses and LCAFs at most ``depth`` levels deep
* ``LCAF_STRATEGIES``     one strategy per LCAF class, for per-class properties
* ``addresses``           alias of ``any_address`` (the name strategies_control.py looks for)
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import assume
from hypothesis import strategies as st

from lispnet.wire.address import (
    LCAF_REGISTRY,
    NO_ADDRESS,
    Address,
    DistinguishedName,
    E164Address,
    Lcaf,
    LcafUnknown,
    MacAddress,
)
from lispnet.wire.lcaf import (
    NO_ALTITUDE,
    ElpHop,
    LcafAfiList,
    LcafApplicationData,
    LcafAsNumber,
    LcafElp,
    LcafEncapFormat,
    LcafGeoCoordinates,
    LcafGeoPoint,
    LcafInstanceId,
    LcafJson,
    LcafKeyValue,
    LcafMulticastInfo,
    LcafNatTraversal,
    LcafNonceLocator,
    LcafNull,
    LcafOpaqueKey,
    LcafRle,
    LcafSecurityKey,
    LcafSourceDest,
    LcafVendor,
    RleEntry,
)

__all__ = [
    "LCAF_STRATEGIES",
    "addresses",
    "any_address",
    "ip_addresses",
    "lcaf_strategies",
    "lcaf_values",
    "simple_addresses",
]


def _uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


_s32 = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.just(NO_ALTITUDE), st.integers(-500, 9000))
_ascii = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=12)
_small_bytes = st.binary(max_size=24)


def ip_addresses() -> st.SearchStrategy[IPv4Address | IPv6Address]:
    """IPv4 or IPv6 addresses."""
    return st.one_of(st.builds(IPv4Address, _uint(32)), st.builds(IPv6Address, _uint(128)))


def simple_addresses() -> st.SearchStrategy[Address]:
    """Every non-LCAF address kind."""
    return st.one_of(
        st.just(NO_ADDRESS),
        ip_addresses(),
        st.builds(MacAddress, st.binary(min_size=6, max_size=6), st.sampled_from([16389, 6])),
        st.builds(E164Address, st.binary(min_size=8, max_size=8)),
        st.builds(DistinguishedName, _ascii),
    )


def _mask_for(address: Address) -> st.SearchStrategy[int]:
    if isinstance(address, IPv4Address):
        return st.integers(0, 32)
    if isinstance(address, IPv6Address):
        return st.integers(0, 128)
    if isinstance(address, MacAddress):
        return st.integers(0, 48)
    return _uint(8)


@st.composite
def _addr_and_mask(draw: st.DrawFn, inner: st.SearchStrategy[Address]) -> tuple[Address, int]:
    address = draw(inner)
    return address, draw(_mask_for(address))


@st.composite
def _source_dest(draw: st.DrawFn, inner: st.SearchStrategy[Address]) -> LcafSourceDest:
    s, sml = draw(_addr_and_mask(inner))
    d, dml = draw(_addr_and_mask(inner))
    return LcafSourceDest(s, sml, d, dml)


@st.composite
def _multicast(draw: st.DrawFn, inner: st.SearchStrategy[Address]) -> LcafMulticastInfo:
    s, sml = draw(_addr_and_mask(inner))
    g, gml = draw(_addr_and_mask(inner))
    return LcafMulticastInfo(draw(_uint(32)), s, sml, g, gml, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@st.composite
def _geo_point(draw: st.DrawFn, inner: st.SearchStrategy[Address]) -> LcafGeoPoint:
    kwargs = dict(
        n_bit=draw(st.booleans()),
        e_bit=draw(st.booleans()),
        has_altitude=draw(st.booleans()),
        has_uncertainty=draw(st.booleans()),
        has_radius=draw(st.booleans()),
        radius_km=draw(st.booleans()),
        m_bit=draw(st.booleans()),
    )
    try:
        return LcafGeoPoint(
            draw(st.integers(0, 90)),
            draw(st.integers(0, 3_599_999)),
            draw(st.integers(0, 180)),
            draw(st.integers(0, 3_599_999)),
            altitude=draw(_s32),
            uncertainty=draw(_uint(16)),
            radius=draw(_uint(16)),
            address=draw(inner),
            **kwargs,
        )
    except ValueError:  # the rare encodings that also read as RFC 8060 are refused by design
        assume(False)
        raise


def lcaf_strategies(depth: int = 2) -> dict[type[Lcaf], st.SearchStrategy[Lcaf]]:
    """One strategy per LCAF class; nested addresses are ``any_address(depth - 1)``."""
    inner = any_address(depth - 1)
    few = st.lists(inner, max_size=3).map(tuple)
    m60 = st.integers(0, 59)
    return {
        LcafNull: st.just(LcafNull()),
        LcafAfiList: st.builds(LcafAfiList, few),
        LcafInstanceId: st.builds(LcafInstanceId, _uint(32), inner, _uint(8)),
        LcafAsNumber: st.builds(LcafAsNumber, _uint(32), inner),
        LcafApplicationData: st.builds(
            LcafApplicationData, _uint(24), _uint(8), _uint(16), _uint(16), _uint(16), _uint(16), inner
        ),
        LcafGeoCoordinates: st.builds(
            LcafGeoCoordinates,
            st.booleans(),
            st.integers(0, 90),
            m60,
            m60,
            st.booleans(),
            st.integers(0, 180),
            m60,
            m60,
            _s32,
            inner,
        ),
        LcafGeoPoint: _geo_point(inner),
        LcafOpaqueKey: st.builds(LcafOpaqueKey, _small_bytes),
        LcafNatTraversal: st.builds(LcafNatTraversal, _uint(16), _uint(16), inner, inner, inner, few),
        LcafNonceLocator: st.builds(LcafNonceLocator, _uint(24), inner),
        LcafMulticastInfo: _multicast(inner),
        LcafElp: st.builds(
            LcafElp,
            st.lists(st.builds(ElpHop, inner, st.booleans(), st.booleans(), st.booleans()), max_size=3).map(tuple),
        ),
        LcafSecurityKey: st.builds(LcafSecurityKey, _uint(8), _uint(8), st.booleans(), _small_bytes, inner),
        LcafSourceDest: _source_dest(inner),
        LcafRle: st.builds(
            LcafRle,
            st.lists(st.builds(RleEntry, inner, _uint(8), st.none() | _ascii), max_size=3).map(tuple),
        ),
        LcafJson: st.builds(LcafJson, _small_bytes, st.booleans(), inner),
        LcafKeyValue: st.builds(LcafKeyValue, inner, inner),
        LcafEncapFormat: st.builds(
            LcafEncapFormat,
            *([st.booleans()] * 7),
            address=inner,
        ),
        LcafVendor: st.builds(LcafVendor, _uint(24), _small_bytes),
        LcafUnknown: st.builds(
            LcafUnknown,
            st.integers(0, 255).filter(lambda t: t not in LCAF_REGISTRY),
            _small_bytes,
            _uint(8),
            _uint(8),
            _uint(8),
        ),
    }


def lcaf_values(depth: int = 2) -> st.SearchStrategy[Lcaf]:
    """Any LCAF value, at most ``depth`` (>= 1) LCAF levels deep counting itself."""
    return st.one_of(*lcaf_strategies(depth).values())


def any_address(depth: int = 2) -> st.SearchStrategy[Address]:
    """Any address: mostly simple ones, LCAFs nested at most ``depth`` levels."""
    if depth <= 0:
        return simple_addresses()
    return st.one_of(simple_addresses(), st.deferred(lambda: lcaf_values(depth)))


addresses = any_address

LCAF_STRATEGIES = lcaf_strategies(2)
"""Per-class strategies whose nested addresses may be one more LCAF level deep."""
