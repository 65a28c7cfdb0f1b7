"""Map-Registers and Map-Requests captured from OOR and lispers.net, replayed over UDP
to a running ``lispnet run`` MS/MR with the site config of shared/interop/README.md.

Every captured Map-Register must be answered with a Map-Notify that verifies with the
site key (same nonce), the registrations must show in the API, and the captured
Map-Requests (ECM from the ITR) must be answered: the MS forwards them to the ETR RLOC
(as in the capture) or proxy-replies to the ITR-RLOC - both outside this machine, so
the daemon's control socket is bound to 127.0.0.1, from which the kernel refuses to send
to any non-loopback address (counted as send failures): nothing leaves the host.  We
check the request outcomes in the counters and that no bug is counted.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_msmr_daemon import free_port

from lispnet.wire.control import Ecm, MapNotify, MapRegister, MapRequest, parse_control
from lispnet.wire.pcap import read_udp

CAPTURES = Path(__file__).resolve().parents[1] / "wire" / "captures"

CONFIG = """
[node]
name = "interop-ms"
roles = ["map-server", "map-resolver"]
api = "127.0.0.1:{api}"
control-addresses = ["127.0.0.1"]
control-port = {port}

[[site]]
name = "oor-site1"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-1", key = "oor-secret" }}]
eid-prefixes = [{{ prefix = "192.168.1.0/24" }}]

[[site]]
name = "oor-site2"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-1", key = "oor-secret" }}]
eid-prefixes = [{{ prefix = "192.168.2.0/24" }}]

[[site]]
name = "site1"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-256", key = "lnet-secret" }}]
eid-prefixes = [{{ prefix = "10.1.0.0/16", accept-more-specifics = true }}]

[[site]]
name = "site2"
authentication-keys = [{{ key-id = 0, algorithm = "hmac-sha-256", key = "lnet-secret" }}]
eid-prefixes = [{{ prefix = "10.2.0.0/16", accept-more-specifics = true }}]
"""

KEYS = {"oor-xtr-msmr.pcap": b"oor-secret", "lispersnet-xtr-msmr.pcap": b"lnet-secret"}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, int]]:
    api, port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    cfg = tmp_path / "ms.toml"
    cfg.write_text(CONFIG.format(api=api, port=port))
    log = open(tmp_path / "log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "lispnet", "run", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{api}"
    try:
        for _ in range(200):
            assert proc.poll() is None, (tmp_path / "log").read_text()
            try:
                if httpx.get(url + "/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.parametrize("capture", sorted(KEYS))
def test_captured_registers_and_requests_are_accepted(daemon: tuple[str, int], capture: str) -> None:
    url, port = daemon
    key = KEYS[capture]
    grams = [d for d in read_udp(CAPTURES / capture) if d.dport == 4342]
    registers = [d.payload for d in grams if isinstance(parse_control(d.payload), MapRegister)]
    requests = [
        d.payload
        for d in grams
        if isinstance(m := parse_control(d.payload), Ecm) and isinstance(m.message, MapRequest) and not m.to_etr
    ]
    assert registers and requests
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    try:
        for raw in registers:
            sent = parse_control(raw)
            assert isinstance(sent, MapRegister)
            sock.sendto(raw, ("127.0.0.1", port))
            reply, _ = sock.recvfrom(65535)
            notify = parse_control(reply)
            assert isinstance(notify, MapNotify) and notify.nonce == sent.nonce
            assert notify.verify(key), "Map-Notify does not verify with the site key"
            assert notify.alg_id == sent.alg_id and len(notify.auth_data) == len(sent.auth_data)
        regs = httpx.get(url + "/registrations", timeout=5).json()
        registered = {r["eid-prefix"] if "eid-prefix" in r else r.get("eid") for r in _rows(regs)}
        for raw in registers:
            msg = parse_control(raw)
            assert isinstance(msg, MapRegister)
            for rec in msg.records:
                assert str(rec.prefix) in registered, (str(rec.prefix), regs)
        before = httpx.get(url + "/stats", timeout=5).json()
        for raw in requests:
            sock.sendto(raw, ("127.0.0.1", port))
        time.sleep(0.5)
        after = httpx.get(url + "/stats", timeout=5).json()
        assert _total(after, "bugs") == _total(before, "bugs") == 0
        assert _total(after, "bugs") == 0
        outcomes = after["roles"]["mapping"]["requests"]
        answered = sum(v for k, v in outcomes.items() if k in ("forwarded-to-etr", "proxy-reply", "proxy-replied"))
        assert answered == len(requests), outcomes
    finally:
        sock.close()


def _rows(doc: object) -> list[dict[str, object]]:
    if isinstance(doc, list):
        return [r for r in doc if isinstance(r, dict)]
    if isinstance(doc, dict):
        for v in doc.values():
            if isinstance(v, list):
                return [r for r in v if isinstance(r, dict)]
    return []


def _total(obj: object, key: str) -> int:
    total = 0
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key and isinstance(v, int):
                total += v
            elif k == key and isinstance(v, dict):
                total += sum(x for x in v.values() if isinstance(x, int))
            else:
                total += _total(v, key)
    elif isinstance(obj, list):
        for v in obj:
            total += _total(v, key)
    return total
