"""Small helpers shared by the LCAF body modules (``lcaf.py``, ``lcaf_geo.py``, ``lcaf_te.py``).

Two jobs: constructor-side range checks that raise ``ValueError``/``TypeError`` (building an
invalid value is our bug), and the decode-side wrapper :func:`build` that turns a
constructor's ``ValueError`` into :class:`BadValue` at the offset of the offending body,
because there a bad field was sent by the peer.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from .address import Address, MacAddress, afi_of
from .buffer import Reader
from .errors import BadValue, DecodeError

T = TypeVar("T")


def check_uint(name: str, value: int, bits: int) -> None:
    """Refuse ``value`` unless it is an ``int`` in ``0 .. 2**bits - 1``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value} does not fit in {bits} bits")


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Refuse ``value`` unless it is an ``int`` in ``low .. high`` (inclusive)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} is outside {low}..{high}")


def check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def check_bytes(name: str, value: bytes, max_len: int = 0xFFFF) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) > max_len:
        raise ValueError(f"{name} is {len(value)} bytes, more than {max_len}")


def check_address(name: str, value: Address) -> None:
    """Refuse anything that is not an address value (``afi_of`` raises ``TypeError``)."""
    try:
        afi_of(value)
    except TypeError:
        raise TypeError(f"{name} must be an address, not {type(value).__name__}") from None


def check_tuple(name: str, value: tuple[object, ...], item: type | tuple[type, ...] | None = None) -> None:
    """Refuse non-tuples (the value must stay hashable) and, if given, items of the wrong type."""
    if not isinstance(value, tuple):
        raise TypeError(f"{name} must be a tuple, not {type(value).__name__}")
    if item is not None:
        for i, v in enumerate(value):
            if not isinstance(v, item):
                raise TypeError(f"{name}[{i}] has the wrong type {type(v).__name__}")


def check_mask_len(name: str, mask_len: int, address: Address) -> None:
    """A mask length fits in 8 bits and, for IP and MAC addresses, in the address width."""
    check_uint(name, mask_len, 8)
    if isinstance(address, IPv4Address):
        width = 32
    elif isinstance(address, IPv6Address):
        width = 128
    elif isinstance(address, MacAddress):
        width = 48
    else:
        return
    if mask_len > width:
        raise ValueError(f"{name}={mask_len} exceeds the {width}-bit address {address}")


def read_s32(r: Reader, what: str) -> int:
    """A two's complement signed 32-bit field."""
    v = r.read_u32(what)
    return v - (1 << 32) if v & 0x80000000 else v


def s32_to_u32(value: int) -> int:
    return value & 0xFFFFFFFF


def build(r: Reader, start: int, make: Callable[[], T]) -> T:
    """Run a value constructor on decoded fields; its ``ValueError`` becomes ``BadValue`` at ``start``.

    Call it only after every nested address was read: the constructor does no decoding, so a
    ``DecodeError`` cannot come from here (and is re-raised untouched if it somehow did).
    """
    try:
        return make()
    except DecodeError:
        raise
    except ValueError as e:
        raise r.error(BadValue, str(e), start) from None
