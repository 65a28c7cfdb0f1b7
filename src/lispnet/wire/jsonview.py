"""Turn wire values (and any frozen dataclass built from them) into plain JSON data.

One converter for every JSON view: ``lispnet decode --json`` and the REST API.  The
rules, applied recursively:

* ``None``, ``bool``, ``str`` and ``float`` stay as they are (a non-finite float
  becomes its string, since JSON has no NaN);
* an enum member becomes its name (open enums mint names such as ``AFI65000``);
* other ints stay numbers, except the fields named in ``hex_fields`` (by default
  ``nonce``, ``xtr_id`` and ``site_id``: 64- and 128-bit ids that JavaScript numbers
  cannot hold), which become ``"0x..."`` strings;
* ``bytes`` become lowercase hex;
* IP addresses and networks, MAC / E.164 / distinguished-name addresses, AFI 0 and
  ``EidPrefix`` become their text form;
* an LCAF becomes an object: ``{"lcaf": TYPE-NAME, "text": str(value), <its fields>}``;
* a dataclass becomes an object of its fields, in declaration order, plus
  ``type_key: ClassName`` when ``type_key`` is given, plus the read-only properties
  named in ``extra_properties`` that the class defines (``prefix`` by default, so a
  record shows its EID prefix as text);
* mappings become objects (keys turned into strings), sequences and sets become lists.

Anything else raises ``TypeError``: a view should not silently print a ``repr``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, TypeAlias

from .address import DistinguishedName, E164Address, Lcaf, MacAddress, NoAddress
from .enums import LcafType
from .prefix import EidPrefix

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""What ``json.dumps`` accepts."""

HEX_FIELDS = frozenset({"nonce", "xtr_id", "site_id"})
"""Integer fields shown as hex strings by default."""

EXTRA_PROPERTIES = ("prefix",)
"""Properties added to a dataclass's object when its class defines them."""

_TEXT_TYPES = (
    IPv4Address,
    IPv6Address,
    IPv4Network,
    IPv6Network,
    MacAddress,
    E164Address,
    DistinguishedName,
    NoAddress,
    EidPrefix,
)


def to_json(
    value: object,
    *,
    type_key: str | None = None,
    hex_fields: frozenset[str] = HEX_FIELDS,
    extra_properties: tuple[str, ...] = EXTRA_PROPERTIES,
) -> JsonValue:
    """``value`` as JSON data, by the rules in the module docstring."""
    return _Converter(type_key, hex_fields, extra_properties).convert(value)


def dumps(value: object, *, type_key: str | None = None, indent: int | None = None) -> str:
    """``json.dumps(to_json(value))``: compact on one line unless ``indent`` is given."""
    sep = (",", ":") if indent is None else (",", ": ")
    return json.dumps(to_json(value, type_key=type_key), indent=indent, separators=sep)


class _Converter:
    __slots__ = ("type_key", "hex_fields", "extra_properties")

    def __init__(self, type_key: str | None, hex_fields: frozenset[str], extra_properties: tuple[str, ...]) -> None:
        self.type_key = type_key
        self.hex_fields = hex_fields
        self.extra_properties = extra_properties

    def convert(self, v: object) -> JsonValue:
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, Enum):
            return v.name
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else str(v)
        if isinstance(v, bytes | bytearray | memoryview):
            return bytes(v).hex()
        if isinstance(v, _TEXT_TYPES):
            return str(v)
        if isinstance(v, Lcaf):
            return self._lcaf(v)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return self._dataclass(v)
        if isinstance(v, Mapping):
            return {str(self.convert(k)) if not isinstance(k, str) else k: self.convert(x) for k, x in v.items()}
        if isinstance(v, list | tuple | set | frozenset):
            items = sorted(v, key=repr) if isinstance(v, set | frozenset) else v
            return [self.convert(x) for x in items]
        raise TypeError(f"no JSON view for {type(v).__name__}")

    def _fields(self, v: Any, out: dict[str, JsonValue]) -> None:
        for f in dataclasses.fields(v):
            x = getattr(v, f.name)
            if f.name in self.hex_fields and isinstance(x, int) and not isinstance(x, bool):
                out[f.name] = f"0x{x:x}"
            else:
                out[f.name] = self.convert(x)

    def _dataclass(self, v: Any) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {}
        if self.type_key is not None:
            out[self.type_key] = type(v).__name__
        self._fields(v, out)
        for name in self.extra_properties:
            if name in out or not isinstance(getattr(type(v), name, None), property):
                continue
            try:
                out[name] = self.convert(getattr(v, name))
            except ValueError:  # e.g. a record whose EID does not make a valid prefix
                continue
        return out

    def _lcaf(self, v: Lcaf) -> dict[str, JsonValue]:
        code = v.get_type()
        out: dict[str, JsonValue] = {"lcaf": LcafType(code).name if 0 <= code <= 255 else str(code), "text": str(v)}
        if self.type_key is not None:
            out[self.type_key] = type(v).__name__
        if dataclasses.is_dataclass(v):
            self._fields(v, out)
        return out


__all__ = ["EXTRA_PROPERTIES", "HEX_FIELDS", "JsonValue", "dumps", "to_json"]
