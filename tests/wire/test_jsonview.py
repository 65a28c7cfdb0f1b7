"""The generic value -> JSON converter (lispnet.wire.jsonview)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from lispnet.wire.address import NO_ADDRESS, DistinguishedName, LcafUnknown, MacAddress
from lispnet.wire.data import LispHeader
from lispnet.wire.enums import Action, Afi
from lispnet.wire.jsonview import dumps, to_json
from lispnet.wire.lcaf import LcafInstanceId
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord


def test_scalars() -> None:
    assert to_json(None) is None
    assert to_json(True) is True
    assert to_json(7) == 7
    assert to_json(1.5) == 1.5
    assert to_json(float("nan")) == "nan"
    assert to_json("x") == "x"
    assert to_json(b"\x01\xab") == "01ab"
    assert to_json(bytearray(b"\xff")) == "ff"


def test_enums_and_open_enums() -> None:
    assert to_json(Action.NATIVELY_FORWARD) == "NATIVELY_FORWARD"
    assert to_json(Afi(65000)) == "AFI65000"

    class Color(Enum):
        RED = "r"

    assert to_json(Color.RED) == "RED"


def test_addresses() -> None:
    assert to_json(IPv4Address("10.0.0.1")) == "10.0.0.1"
    assert to_json(IPv6Address("2001:db8::1")) == "2001:db8::1"
    assert to_json(ip_network("10.0.0.0/8")) == "10.0.0.0/8"
    assert to_json(MacAddress(bytes.fromhex("001122334455"))) == "00:11:22:33:44:55"
    assert to_json(DistinguishedName("xtr1")) == "'xtr1'"
    assert to_json(NO_ADDRESS) == "(none)"
    assert to_json(EidPrefix.parse("10.1.0.0/16", 1000)) == "[1000]10.1.0.0/16"


def test_lcaf() -> None:
    v = to_json(LcafInstanceId(1000, IPv4Address("10.1.0.0")))
    assert v == {"lcaf": "INSTANCE_ID", "text": "[1000]10.1.0.0", "iid": 1000, "address": "10.1.0.0",
                 "iid_mask_len": 0}
    u = to_json(LcafUnknown(200, b"\xaa", 1, 2, 3))
    assert isinstance(u, dict) and u["lcaf"] == "LCAFTYPE200" and u["body"] == "aa"


def test_record_with_prefix_and_type_key() -> None:
    rec = EidRecord.for_prefix(EidPrefix.parse("10.2.0.0/16", 7), (LocatorRecord(IPv4Address("192.0.2.1")),), ttl=15)
    v = to_json(rec, type_key="type")
    assert isinstance(v, dict)
    assert v["type"] == "EidRecord"
    assert v["prefix"] == "[7]10.2.0.0/16"
    assert v["ttl"] == 15 and v["action"] == "NO_ACTION" and v["mask_len"] == 16
    assert isinstance(v["eid"], dict) and v["eid"]["iid"] == 7
    locs = v["locators"]
    assert isinstance(locs, list) and locs[0] == {
        "type": "LocatorRecord", "address": "192.0.2.1", "priority": 1, "weight": 100, "m_priority": 255,
        "m_weight": 0, "local": False, "probed": False, "reachable": True,
    }
    assert "type" not in to_json(rec)  # type: ignore[operator]


def test_invalid_prefix_property_is_left_out() -> None:
    rec = EidRecord(IPv4Address("10.0.0.0"), 40)  # mask-len too long for IPv4: no prefix
    v = to_json(rec)
    assert isinstance(v, dict) and "prefix" not in v and v["mask_len"] == 40


def test_hex_fields() -> None:
    assert to_json(LispHeader(nonce=0x123456)) == {
        "nonce": "0x123456", "lsb": None, "echo_nonce_request": False, "map_version": None,
        "instance_id": None, "key_id": 0,
    }
    assert to_json(LispHeader(map_version=(1, 2)))["map_version"] == [1, 2]  # type: ignore[index,call-overload]
    assert to_json(LispHeader(nonce=5), hex_fields=frozenset())["nonce"] == 5  # type: ignore[index,call-overload]


def test_containers_and_dumps() -> None:
    @dataclass(frozen=True)
    class Box:
        items: tuple[int, ...]
        tags: frozenset[str]
        table: dict[int, bytes]

    b = Box((1, 2), frozenset({"b", "a"}), {1: b"\x00"})
    assert to_json(b) == {"items": [1, 2], "tags": ["a", "b"], "table": {"1": "00"}}
    assert json.loads(dumps(b)) == to_json(b)
    assert "\n" in dumps(b, indent=2)


def test_unknown_types_refused() -> None:
    with pytest.raises(TypeError):
        to_json(object())
    with pytest.raises(TypeError):
        to_json(LispHeader)  # a dataclass type is not a value
