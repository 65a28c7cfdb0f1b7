"""Config validation: the examples load; every kind of bad key or value names its path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lispnet.config.load import ConfigError, load_config, parse_config
from lispnet.config.model import NodeConfig, Site, split_host_port
from lispnet.wire.enums import AuthAlg
from lispnet.wire.prefix import EidPrefix

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = """
[node]
name = "msmr1"
roles = ["map-server", "map-resolver"]
api = "127.0.0.1:8080"
control-addresses = ["192.0.2.10"]

[[site]]
name = "site-a"
authentication-keys = [{ key-id = 0, algorithm = "hmac-sha-256", key = "s3cret" }]
eid-prefixes = [{ prefix = "10.1.0.0/16", instance-id = 0, accept-more-specifics = true }]
"""


@pytest.mark.parametrize("name", ["msmr.toml", "xtr.toml"])
def test_examples_load(name: str) -> None:
    cfg = load_config(EXAMPLES / name)
    assert isinstance(cfg, NodeConfig)


def test_issue_minimal_example() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.node.control_port == 4342
    assert cfg.roles == {"map-server", "map-resolver"}
    site = cfg.site[0]
    assert site.authentication_keys[0].alg_id == AuthAlg.HMAC_SHA_256_128
    assert site.eid_prefixes[0].eid_prefix == EidPrefix.parse("10.1.0.0/16")
    assert site.eid_prefixes[0].accept_more_specifics
    assert cfg.map_resolver_options.negative_action == "natively-forward"


def test_msmr_example_content() -> None:
    cfg = load_config(EXAMPLES / "msmr.toml")
    assert [s.name for s in cfg.site] == ["site-a", "site-b"]
    assert cfg.site_by_name("site-a") is not None
    assert cfg.static_mapping[0].prefix == EidPrefix.parse("10.9.0.0/16")


def test_defaults() -> None:
    cfg = parse_config('[node]\nname = "n"\nroles = ["map-resolver"]\n')
    assert cfg.node.api == "127.0.0.1:8080"
    assert cfg.node.control_addresses == ()
    assert cfg.node.control_port == 4342
    assert cfg.node.state_file is None


def test_api_off() -> None:
    cfg = parse_config('[node]\nname = "n"\nroles = ["map-resolver"]\napi = "off"\n')
    assert cfg.node.api is None


def test_frozen() -> None:
    cfg = parse_config(MINIMAL)
    with pytest.raises(ValidationError):
        cfg.node.name = "x"


def test_site_roundtrip_through_dict() -> None:
    site = parse_config(MINIMAL).site[0]
    again = Site.model_validate(site.to_toml_dict())
    assert again == site
    assert "key" in site.to_toml_dict()["authentication-keys"][0]
    assert "s3cret" not in repr(site)


def _bad(mutate: Any) -> list[str]:
    data = tomllib.loads(MINIMAL)
    mutate(data)
    with pytest.raises(ConfigError) as ei:
        parse_config(data)
    return ei.value.problems


BAD_CASES: list[tuple[str, Any, str]] = [
    (
        "algorithm",
        lambda d: d["site"][0]["authentication-keys"][0].update(algorithm="hmac-md5"),
        "site[0].authentication-keys[0].algorithm: must be one of hmac-sha-1, hmac-sha-256",
    ),
    ("unknown key", lambda d: d["node"].update({"contrl-port": 1}), "node.contrl-port: unknown key (did you mean control-port?)"),
    ("unknown section", lambda d: d.update({"sitee": []}), "sitee: unknown key"),
    ("missing key", lambda d: d["node"].pop("name"), "node.name: required key missing"),
    ("bad role", lambda d: d["node"]["roles"].append("router"), "node.roles[2]: must be one of map-server"),
    ("no role", lambda d: d["node"].update(roles=[]), "node.roles: at least one role is needed"),
    ("dup role", lambda d: d["node"]["roles"].append("map-server"), "node.roles: duplicate role"),
    ("bad address", lambda d: d["node"].update({"control-addresses": ["300.1.1.1"]}), "node.control-addresses[0]: not an IPv4 or IPv6 address"),
    ("bad api", lambda d: d["node"].update(api="localhost"), "node.api: expected"),
    ("bad port", lambda d: d["node"].update({"control-port": 70000}), "node.control-port: must be <= 65535"),
    ("lan batch", lambda d: d["node"].update({"lan-batch-us": -1}), "node.lan-batch-us: must be >= 0"),
    ("lan gro", lambda d: d["node"].update({"lan-gro": "sometimes"}), "node.lan-gro: must be a valid boolean"),
    ("port type", lambda d: d["node"].update({"control-port": "x"}), "node.control-port: must be a valid integer"),
    ("bad log level", lambda d: d["node"].update({"log-level": "loud"}), "node.log-level: must be one of debug, info, warning, error"),
    (
        "bad prefix",
        lambda d: d["site"][0]["eid-prefixes"][0].update(prefix="10.1.0.0/40"),
        "site[0].eid-prefixes[0].prefix: not an EID prefix",
    ),
    ("bad iid", lambda d: d["site"][0]["eid-prefixes"][0].update({"instance-id": -1}), "site[0].eid-prefixes[0].instance-id: must be >= 0"),
    ("no keys", lambda d: d["site"][0].update({"authentication-keys": []}), "site[0].authentication-keys: at least one key is needed"),
    (
        "dup key id",
        lambda d: d["site"][0]["authentication-keys"].append({"key-id": 0, "key": "x"}),
        "site[0].authentication-keys: duplicate key-id 0",
    ),
    ("empty key", lambda d: d["site"][0]["authentication-keys"][0].update(key=""), "site[0].authentication-keys[0].key: must be at least 1 character"),
    ("key id range", lambda d: d["site"][0]["authentication-keys"][0].update({"key-id": 65536}), "site[0].authentication-keys[0].key-id: must be <= 65535"),
    ("dup site", lambda d: d["site"].append(dict(d["site"][0])), "site: duplicate site name 'site-a'"),
    ("site name", lambda d: d["site"][0].update(name="a b"), "site[0].name: must match"),
    ("allowed rlocs", lambda d: d["site"][0].update({"allowed-rlocs": ["nope/8"]}), "site[0].allowed-rlocs[0]: not an IPv4 or IPv6 prefix"),
    ("bool", lambda d: d["site"][0].update({"proxy-reply": "maybe"}), "site[0].proxy-reply: must be a valid boolean"),
    (
        "negative action",
        lambda d: d.update({"map-resolver-options": {"negative-action": "forward"}}),
        "map-resolver-options.negative-action: must be one of no-action, natively-forward",
    ),
    (
        "rate limit",
        lambda d: d.update({"map-resolver-options": {"map-request-rate-limit": -5}}),
        "map-resolver-options.map-request-rate-limit: must be >= 0",
    ),
    (
        "db mapping rlocs",
        lambda d: d.update({"database-mapping": [{"eid-prefix": "10.1.1.0/24", "rlocs": [{"address": "1.2.3.4", "priority": 300}]}]}),
        "database-mapping[0].rlocs[0].priority: must be <= 255",
    ),
    ("section type", lambda d: d.update(node=[1]), "node: must be a table"),
    ("list type", lambda d: d["site"][0].update({"eid-prefixes": "10.0.0.0/8"}), "site[0].eid-prefixes: must be a list"),
    (
        "etr needs key",
        lambda d: (
            d["node"].update(roles=["etr"]),
            d.update({"map-server": [{"address": "192.0.2.1"}],
                      "database-mapping": [{"eid-prefix": "10.1.1.0/24", "rlocs": [{"address": "1.2.3.4"}]}]}),
        ),
        "map-server[0].key is required for the ETR role",
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_config_names_path(case: tuple[str, Any, str]) -> None:
    _, mutate, expected = case
    problems = _bad(mutate)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_all_problems_reported_at_once() -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["node"]["log-level"] = "x"
        d["site"][0]["authentication-keys"][0]["algorithm"] = "y"

    assert len(_bad(mutate)) == 2


def test_toml_syntax_error() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("[node\nname=1")
    assert ei.value.problems[0].startswith("TOML syntax:")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(tmp_path / "missing.toml")
    assert "cannot read" in ei.value.problems[0]
    assert str(tmp_path / "missing.toml") in str(ei.value)


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["::1:80", "host", ":80", "h:99999", "[::1]80"])
def test_split_host_port_bad(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text)
