"""Geo-Coordinates LCAF (type 5) in its two encodings.

RFC 8060 section 4.3 defines type 5 as degrees/minutes/seconds with a hemisphere bit, a
32-bit altitude and an address (:class:`LcafGeoCoordinates`; OOR and Wireshark speak it).
draft-ietf-lisp-geo deprecates that layout and reuses type 5 for a GPS-style encoding with
flags, an uncertainty, degrees + milliseconds, an altitude and a radius
(:class:`LcafGeoPoint`; lispers.net speaks it).  The LCAF header does not say which one a
body uses, so the decoder applies one deterministic rule:

    A type-5 body is RFC 8060 if it parses completely in that layout: every field in range
    (degrees <= 90 / 180, minutes and seconds <= 59) and the address ending exactly at the
    end of the body.  Any other body is decoded in the draft layout.

Every RFC 8060 value therefore round-trips.  A draft encoding can pass the RFC 8060 test
only in a narrow corner (its altitude's upper 16 bits must read as a known AFI whose
address ends exactly at the body end, e.g. altitude 524288..589823 m with no address), so
:class:`LcafGeoPoint` refuses to build such a value: every value it accepts round-trips too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import NO_ADDRESS, Address, Lcaf, read_address, register_lcaf, write_address
from .buffer import Reader, Writer
from .enums import LcafType
from .errors import BadLcaf
from .lcaf_common import build, check_address, check_bool, check_range, check_uint, read_s32, s32_to_u32

NO_ALTITUDE = 0x7FFFFFFF
"""Altitude value meaning "no altitude encoded" (RFC 8060 section 4.3)."""

_S32_MIN = -(1 << 31)
_S32_MAX = (1 << 31) - 1
_MS_PER_DEGREE = 3_600_000


def _check_altitude(value: int) -> None:
    check_range("altitude", value, _S32_MIN, _S32_MAX)


# RFC 8060 section 4.3: Geo Coordinates


@register_lcaf
@dataclass(frozen=True, slots=True)
class LcafGeoCoordinates(Lcaf):
    """Type 5, RFC 8060 section 4.3 layout: a position in degrees, minutes and seconds.

    It is the registered decoder for type 5 and returns an :class:`LcafGeoPoint` for bodies
    in the draft-ietf-lisp-geo layout (see the module docstring for the rule).
    """

    lcaf_type = LcafType.GEO_COORDINATES
    north: bool
    """N bit: northern latitude (False = southern)."""
    lat_degrees: int
    """Latitude degrees, 0..90 (15 bits on the wire)."""
    lat_minutes: int
    """Latitude minutes, 0..59."""
    lat_seconds: int
    """Latitude seconds, 0..59."""
    east: bool
    """E bit: eastern longitude (False = western)."""
    lon_degrees: int
    """Longitude degrees, 0..180 (15 bits on the wire)."""
    lon_minutes: int
    """Longitude minutes, 0..59."""
    lon_seconds: int
    """Longitude seconds, 0..59."""
    altitude: int = NO_ALTITUDE
    """Metres relative to sea level, signed 32-bit; ``NO_ALTITUDE`` when unknown."""
    address: Address = NO_ADDRESS
    """The address at this position (AFI 0 for none)."""

    def __post_init__(self) -> None:
        check_bool("north", self.north)
        check_bool("east", self.east)
        check_range("lat_degrees", self.lat_degrees, 0, 90)
        check_range("lon_degrees", self.lon_degrees, 0, 180)
        for name in ("lat_minutes", "lat_seconds", "lon_minutes", "lon_seconds"):
            check_range(name, getattr(self, name), 0, 59)
        _check_altitude(self.altitude)
        check_address("address", self.address)

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> Lcaf:
        value = _try_rfc8060(r)
        if value is not None:
            return value
        return LcafGeoPoint._from_draft_body(r)

    def body_to_wire(self, w: Writer) -> None:
        w.write_u16((0x8000 if self.north else 0) | self.lat_degrees)
        w.write_u8(self.lat_minutes)
        w.write_u8(self.lat_seconds)
        w.write_u16((0x8000 if self.east else 0) | self.lon_degrees)
        w.write_u8(self.lon_minutes)
        w.write_u8(self.lon_seconds)
        w.write_u32(s32_to_u32(self.altitude))
        write_address(w, self.address)

    def __str__(self) -> str:
        return (
            f"{self.lat_degrees}-{self.lat_minutes}-{self.lat_seconds}-{'N' if self.north else 'S'}-"
            f"{self.lon_degrees}-{self.lon_minutes}-{self.lon_seconds}-{'E' if self.east else 'W'}"
        )


def _try_rfc8060(r: Reader) -> LcafGeoCoordinates | None:
    """Parse the rest of ``r`` in the RFC 8060 layout; None (``r`` untouched) unless it all fits."""
    t = Reader(r.data, r.pos, r.end, r.msg_type, BadLcaf)
    t.depth = r.depth
    try:
        lat = t.read_u16()
        lat_min = t.read_u8()
        lat_sec = t.read_u8()
        lon = t.read_u16()
        lon_min = t.read_u8()
        lon_sec = t.read_u8()
        altitude = read_s32(t, "altitude")
        address = read_address(t)
        if not t.at_end():
            return None
        value = LcafGeoCoordinates(
            bool(lat & 0x8000),
            lat & 0x7FFF,
            lat_min,
            lat_sec,
            bool(lon & 0x8000),
            lon & 0x7FFF,
            lon_min,
            lon_sec,
            altitude,
            address,
        )
    except ValueError:  # DecodeError included: this body is not in the RFC 8060 layout
        return None
    r.pos = t.pos
    return value


# draft-ietf-lisp-geo section 3 (as implemented by lispers.net): the GPS-style encoding

GEO_U = 0x80
GEO_N = 0x40
GEO_E = 0x20
GEO_A = 0x10
GEO_M = 0x08
GEO_R = 0x04
GEO_K = 0x02


@dataclass(frozen=True, slots=True)
class LcafGeoPoint(Lcaf):
    """Type 5, draft-ietf-lisp-geo layout: degrees + milliseconds, uncertainty, altitude, radius.

    A point with ``has_radius`` set is a geo-prefix: "every EID within the circle".  The
    flags are kept as received; the sense of N and E is not settled between the draft text
    and lispers.net, so they are named by their letters.
    """

    lcaf_type = LcafType.GEO_COORDINATES
    lat_degrees: int
    """Latitude degrees, 0..90 (8 bits)."""
    lat_milliseconds: int
    """Latitude within the degree: (minutes * 60 + seconds) * 1000, 0..3599999 (24 bits)."""
    lon_degrees: int
    """Longitude degrees, 0..180 (8 bits)."""
    lon_milliseconds: int
    """Longitude within the degree, 0..3599999 (24 bits)."""
    n_bit: bool = False
    """N (0x40): hemisphere of the latitude (lispers.net sets it for southern latitudes)."""
    e_bit: bool = False
    """E (0x20): hemisphere of the longitude (lispers.net sets it for western longitudes)."""
    altitude: int = 0
    """Altitude in metres, signed 32-bit (meaningful when ``has_altitude``)."""
    has_altitude: bool = False
    """A (0x10): the altitude field is present."""
    uncertainty: int = 0
    """Location uncertainty (16 bits, meaningful when ``has_uncertainty``)."""
    has_uncertainty: bool = False
    """U (0x80): the uncertainty field is present."""
    radius: int = 0
    """Radius of a geo-prefix (16 bits, meaningful when ``has_radius``)."""
    has_radius: bool = False
    """R (0x04): the radius field is present."""
    radius_km: bool = False
    """K (0x02): the radius is in kilometres (otherwise metres)."""
    m_bit: bool = False
    """M (0x08): carried as received (its meaning is unconfirmed)."""
    address: Address = NO_ADDRESS
    """The address at this position (AFI 0 for none)."""

    def __post_init__(self) -> None:
        check_range("lat_degrees", self.lat_degrees, 0, 90)
        check_range("lon_degrees", self.lon_degrees, 0, 180)
        check_range("lat_milliseconds", self.lat_milliseconds, 0, _MS_PER_DEGREE - 1)
        check_range("lon_milliseconds", self.lon_milliseconds, 0, _MS_PER_DEGREE - 1)
        for name in ("n_bit", "e_bit", "has_altitude", "has_uncertainty", "has_radius", "radius_km", "m_bit"):
            check_bool(name, getattr(self, name))
        _check_altitude(self.altitude)
        check_uint("uncertainty", self.uncertainty, 16)
        check_uint("radius", self.radius, 16)
        check_address("address", self.address)
        # the decoder's rule prefers RFC 8060; refuse the few values it would misread
        w = Writer()
        self.body_to_wire(w)
        if _try_rfc8060(Reader(w.getvalue(), overrun=BadLcaf)) is not None:
            raise ValueError("this geo point's encoding also parses as an RFC 8060 Geo Coordinates body")

    @property
    def flags(self) -> int:
        """The U/N/E/A/M/R/K flag byte."""
        bits = 0
        for on, mask in (
            (self.has_uncertainty, GEO_U),
            (self.n_bit, GEO_N),
            (self.e_bit, GEO_E),
            (self.has_altitude, GEO_A),
            (self.m_bit, GEO_M),
            (self.has_radius, GEO_R),
            (self.radius_km, GEO_K),
        ):
            if on:
                bits |= mask
        return bits

    @classmethod
    def body_from_wire(cls, r: Reader, rsvd1: int, flags: int, rsvd2: int) -> LcafGeoPoint:
        return cls._from_draft_body(r)

    @classmethod
    def _from_draft_body(cls, r: Reader) -> LcafGeoPoint:
        start = r.pos
        flags = r.read_u8("geo flags")
        r.read_u8("geo reserved")
        uncertainty = r.read_u16("location uncertainty")
        lat_deg = r.read_u8("latitude degrees")
        lat_ms = r.read_u24("latitude milliseconds")
        lon_deg = r.read_u8("longitude degrees")
        lon_ms = r.read_u24("longitude milliseconds")
        altitude = read_s32(r, "altitude")
        radius = r.read_u16("radius")
        r.read_u16("geo reserved")
        address = read_address(r)
        return build(
            r,
            start,
            lambda: cls(
                lat_deg,
                lat_ms,
                lon_deg,
                lon_ms,
                n_bit=bool(flags & GEO_N),
                e_bit=bool(flags & GEO_E),
                altitude=altitude,
                has_altitude=bool(flags & GEO_A),
                uncertainty=uncertainty,
                has_uncertainty=bool(flags & GEO_U),
                radius=radius,
                has_radius=bool(flags & GEO_R),
                radius_km=bool(flags & GEO_K),
                m_bit=bool(flags & GEO_M),
                address=address,
            ),
        )

    def body_to_wire(self, w: Writer) -> None:
        w.write_u8(self.flags)
        w.write_u8(0)
        w.write_u16(self.uncertainty)
        w.write_u8(self.lat_degrees)
        w.write_u24(self.lat_milliseconds)
        w.write_u8(self.lon_degrees)
        w.write_u24(self.lon_milliseconds)
        w.write_u32(s32_to_u32(self.altitude))
        w.write_u16(self.radius)
        w.write_u16(0)
        write_address(w, self.address)
