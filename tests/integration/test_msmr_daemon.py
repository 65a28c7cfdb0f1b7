"""The MS/MR daemon end to end over real UDP on loopback.

``lispnet run`` is started as a subprocess from ``examples/msmr.toml`` (a temp copy with
free ports and a state file); the test plays an ETR registering with the right and the
wrong key (Map-Registers built with the wire codec), runs ``lispnet lig`` for a
registered EID (proxy reply) and a non-EID (negative), reads the API, ``lispnet show``
and ``/metrics``, sends malformed datagrams, writes a site through the API, restarts the
daemon to see it survive, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from lispnet.wire.control import MapNotify, MapRegister, parse_control
from lispnet.wire.enums import AuthAlg
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord, LocatorRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LISPNET = [sys.executable, "-m", "lispnet"]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    proc: subprocess.Popen[str]
    api: str
    port: int
    config: Path
    log: Path

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.api + path, params=params, timeout=5)
        r.raise_for_status()
        return r.json()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return int(self.proc.returncode)


def make_config(tmp: Path) -> Path:
    text = (EXAMPLES / "msmr.toml").read_text()
    api_port, ctl_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    text = text.replace('api = "127.0.0.1:8080"', f'api = "127.0.0.1:{api_port}"')
    text = text.replace("control-port = 4342", f"control-port = {ctl_port}")
    text = text.replace('# state-file = "/var/lib/lispnet/msmr1.json"', f'state-file = "{tmp / "state.json"}"')
    assert f"{api_port}" in text and f"{ctl_port}" in text and "state.json" in text
    path = tmp / "msmr.toml"
    path.write_text(text)
    return path


def start(config: Path, log: Path) -> Node:
    text = config.read_text()
    api = "http://" + re.search(r'^api = "([^"]+)"', text, re.M).group(1)  # type: ignore[union-attr]
    port = int(re.search(r"^control-port = (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    logf = open(log, "a")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([*LISPNET, "run", str(config)], stdout=logf, stderr=subprocess.STDOUT, text=True)
    node = Node(proc, api, port, config, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(api + "/healthz", timeout=0.5).status_code == 200:
                return node
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    node.stop()
    raise AssertionError("daemon did not come up:\n" + log.read_text())


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = start(make_config(tmp_path), tmp_path / "daemon.log")
    try:
        yield n
    finally:
        if n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait()


class Etr:
    """A test ETR: one UDP socket on 127.0.0.1."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)

    def close(self) -> None:
        self.sock.close()

    def register(
        self, port: int, key: bytes, prefix: str, rloc: str = "198.51.100.1", key_id: int = 0,
        alg: AuthAlg = AuthAlg.HMAC_SHA_256_128, nonce: int = 0x1122334455667788, proxy: bool = True,
    ) -> MapRegister:
        rec = EidRecord.for_prefix(
            EidPrefix.parse(prefix), (LocatorRecord(ip_address(rloc), priority=1, weight=100),), ttl=3
        )
        msg = MapRegister(nonce, (rec,), key_id=key_id, alg_id=alg, proxy_reply=proxy, want_map_notify=True).signed(key)
        self.sock.sendto(msg.to_bytes(), ("127.0.0.1", port))
        return msg

    def receive(self, timeout: float = 2.0) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        return data


def lig(node: Node, eid: str, *extra: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run(
        [*LISPNET, "lig", eid, "--map-resolver", f"127.0.0.1:{node.port}", "--timeout", "2", "--count", "2", "--json", *extra],
        capture_output=True, text=True, timeout=30,
    )
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}


def show(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [*LISPNET, "show", *args, "--api", node.api], capture_output=True, text=True, timeout=30, env=env
    )


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def test_msmr_end_to_end(node: Node, tmp_path: Path) -> None:
    etr = Etr()
    try:
        # --- right key: registered, Map-Notify back (same nonce, verifies with the key)
        sent = etr.register(node.port, b"s3cret", "10.1.1.0/24")
        data = etr.receive()
        assert data is not None, node.log.read_text()
        notify = parse_control(data)
        assert isinstance(notify, MapNotify) and notify.nonce == sent.nonce
        assert notify.verify(b"s3cret")
        assert notify.records[0].prefix == EidPrefix.parse("10.1.1.0/24")

        # --- wrong key: no Map-Notify, counted as bad-hmac for site-a
        etr.register(node.port, b"not-the-key", "10.1.2.0/24", nonce=2)
        assert etr.receive(0.5) is None
        # --- unknown key-id, EID outside every site
        etr.register(node.port, b"s3cret", "10.1.3.0/24", key_id=7, nonce=3)
        etr.register(node.port, b"s3cret", "192.168.0.0/24", nonce=4)
        assert etr.receive(0.5) is None
        etr_port = etr.sock.getsockname()[1]
    finally:
        etr.close()

    # --- lig: registered EID answered by proxy, non-EID negative
    rc, res = lig(node, "10.1.1.77")
    assert rc == 0, res
    rec = res["records"][0]
    assert rec["eid-prefix"] == "10.1.1.0/24" and not rec["negative"]
    assert [(x["address"], x["priority"], x["weight"]) for x in rec["rlocs"]] == [("198.51.100.1", 1, 100)]
    assert rec["ttl"] == 3 and res["rtt"] > 0
    rc, res = lig(node, "8.8.8.8")
    assert rc == 0
    rec = res["records"][0]
    assert rec["negative"] and rec["action"] == "natively-forward" and rec["ttl"] == 15
    assert ip_address("8.8.8.8") in __import__("ipaddress").ip_network(rec["eid-prefix"])
    rc, res = lig(node, "10.2.5.5")  # configured for site-b, not registered: 1 minute
    assert rc == 0 and res["records"][0]["ttl"] == 1 and res["records"][0]["negative"]

    # --- API: registration with its RLOCs and registrant; rejections with reason + offender
    regs = node.get("/registrations", eid="10.1.1.0/24")
    assert len(regs) == 1
    reg = regs[0]
    assert reg["site"] == "site-a" and reg["rlocs"][0]["address"] == "198.51.100.1"
    r0 = reg["registrants"][0]
    assert r0["registrant"] == f"127.0.0.1:{etr_port}"
    assert abs(r0["last-registered"] - time.time()) < 60 and r0["expires-in"] > 100
    assert node.get("/registrations", eid="10.1.1.9")[0]["eid-prefix"] == "10.1.1.0/24"
    rej = {(r["site"], r["reason"]): r for r in node.get("/rejections")}
    assert rej[("site-a", "bad-hmac")]["count"] == 1
    assert rej[("site-a", "bad-hmac")]["last-source"] == f"127.0.0.1:{etr_port}"
    assert rej[("site-a", "bad-hmac")]["last-eid"] == "10.1.2.0/24"
    assert abs(rej[("site-a", "bad-hmac")]["last-time"] - time.time()) < 60
    assert rej[("site-a", "bad-key-id")]["count"] == 1
    assert rej[(None, "eid-not-in-any-site")]["count"] == 1
    site = node.get("/sites/site-a")
    assert site["site"]["registered"] == 1 and site["site"]["rejected"] == 2
    assert all("key" not in k for k in site["site"]["authentication-keys"])

    # --- CLI views (API clients)
    out = show(node, "registrations")
    assert out.returncode == 0 and "10.1.1.0/24" in out.stdout and "198.51.100.1" in out.stdout, out
    out = show(node, "site", "site-a")
    assert out.returncode == 0 and "bad-hmac" in out.stdout and "s3cret" not in out.stdout, out
    out = show(node, "registrations", "--json", "--iid", "0")
    assert json.loads(out.stdout)[0]["site"] == "site-a"
    out = show(node, "stats", "--json")
    assert json.loads(out.stdout)["daemon"]["bugs"] == 0

    # --- malformed datagrams: counted, the daemon keeps serving
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"\x30\x00\x00", b"\x80" + b"\x00" * 5, b"", b"\xa0junk", b"\x10" + os.urandom(40)):
            s.sendto(junk, ("127.0.0.1", node.port))
    time.sleep(0.3)
    rc, res = lig(node, "10.1.1.1")
    assert rc == 0 and res["records"][0]["rlocs"]
    stats = node.get("/stats")
    errors = stats["roles"]["mapping"]["decode-errors"]
    assert sum(errors.values()) >= 3, stats
    assert stats["daemon"]["unhandled"].get("unknown", 0) >= 2

    # --- metrics
    m = httpx.get(node.api + "/metrics", timeout=5).text
    assert metric(m, "lispnet_mapping_rejections_total", site="site-a", reason="bad-hmac") == 1
    assert metric(m, "lispnet_mapping_registrations") == 2  # ETR + the static mapping
    assert metric(m, "lispnet_control_received_total", kind="map-register") == 5  # 4 + one truncated
    assert metric(m, "lispnet_control_sent_total", kind="map-notify") == 1
    assert (metric(m, "lispnet_mapping_decode_errors_total", engine="map-resolver") or 0) >= 1
    assert (metric(m, "lispnet_mapping_decode_errors_total", engine="map-server") or 0) >= 1
    assert metric(m, "lispnet_mapping_requests_total", engine="map-server", outcome="proxy-reply") == 2
    assert (metric(m, "lispnet_control_processing_seconds_count", kind="ecm") or 0) >= 4
    assert metric(m, "lispnet_bugs_total") == 0

    # --- no bug, clean SIGTERM
    assert node.get("/healthz")["bugs"] == 0
    assert node.stop() == 0
    log = node.log.read_text()
    assert "BUG" not in log and "Traceback" not in log, log
    assert "site site-a: 10.1.1.0/24 registered" in log
    assert "reason bad-hmac" in log
    assert "node msmr1 stopped" in log


def test_api_writes_survive_restart(node: Node, tmp_path: Path) -> None:
    site = {
        "name": "site-c",
        "authentication-keys": [{"key-id": 3, "algorithm": "hmac-sha-1", "key": "c-key"}],
        "eid-prefixes": [{"prefix": "10.3.0.0/16", "accept-more-specifics": True}],
    }
    r = httpx.put(node.api + "/sites/site-c", json=site, timeout=5)
    assert r.status_code == 201, r.text
    assert httpx.put(node.api + "/sites/site-c", json=site, timeout=5).status_code == 200
    bad = dict(site, **{"authentication-keys": [{"key-id": 3, "algorithm": "md5", "key": "x"}]})
    r = httpx.put(node.api + "/sites/site-c", json=bad, timeout=5)
    assert r.status_code == 422 and "algorithm" in r.text
    assert httpx.post(node.api + "/sites", json=site, timeout=5).status_code == 409
    assert httpx.delete(node.api + "/sites/site-b", timeout=5).status_code == 200
    assert httpx.delete(node.api + "/sites/nope", timeout=5).status_code == 404
    sm = {"eid-prefix": "10.8.0.0/16", "rlocs": [{"address": "198.51.100.8", "priority": 2, "weight": 50}]}
    assert httpx.put(node.api + "/static-mappings", json=sm, timeout=5).status_code == 201
    assert httpx.delete(node.api + "/static-mappings", params={"eid-prefix": "10.9.0.0/16"}, timeout=5).status_code == 200

    # registering with the new site's SHA-1 key works at once
    etr = Etr()
    try:
        etr.register(node.port, b"c-key", "10.3.3.0/24", key_id=3, alg=AuthAlg.HMAC_SHA_1_96)
        data = etr.receive()
        assert data is not None and isinstance(parse_control(data), MapNotify)
    finally:
        etr.close()
    assert node.stop() == 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert [s["name"] for s in state["roles"]["mapping"]["sites"]] == ["site-c"]

    again = start(node.config, node.log)
    try:
        names = [s["name"] for s in again.get("/sites")]
        assert names == ["site-a", "site-c"]
        statics = {m["eid-prefix"] for m in again.get("/static-mappings")}
        assert statics == {"10.8.0.0/16"}
        rc, res = lig(again, "10.8.1.1")
        assert rc == 0 and res["records"][0]["rlocs"][0]["address"] == "198.51.100.8"
        assert again.get("/healthz")["bugs"] == 0
    finally:
        assert again.stop() == 0


def test_sighup_reload_applies_site_changes(node: Node) -> None:
    text = node.config.read_text()
    text = text.replace('name = "site-b"', 'name = "site-b2"')
    node.config.write_text(text)
    node.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        names = [s["name"] for s in node.get("/sites")]
        if "site-b2" in names:
            break
        time.sleep(0.1)
    assert names == ["site-a", "site-b2"]
    node.config.write_text("[node]\nname = 42\n")  # broken: logged, ignored
    node.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert node.proc.poll() is None
    assert node.get("/stats")["daemon"]["reload-failures"] == 1
    assert node.stop() == 0


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "msmr.toml").read_text().replace('algorithm = "hmac-sha-256"', 'algorithm = "sha-512"', 1))
    r = subprocess.run([*LISPNET, "run", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "site[0].authentication-keys[0].algorithm: must be one of hmac-sha-1, hmac-sha-256" in r.stdout + r.stderr


def test_lig_timeout_exit_status() -> None:
    port = free_port(socket.SOCK_DGRAM)
    r = subprocess.run(
        [*LISPNET, "lig", "10.1.1.1", "--map-resolver", f"127.0.0.1:{port}", "--timeout", "0.2", "--count", "1"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 1 and "No map-reply" in r.stdout
