"""Small shell pieces: the datagram classifier, rate-limited logging, a Map-Resolver-only
node forwarding to its Map-Server, lig's request builder, show's prefix matching."""

from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import ip_address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lispnet.cli.lig import build_request, record_view
from lispnet.cli.main import app
from lispnet.config.load import parse_config
from lispnet.shell import udp
from lispnet.shell.daemon import Daemon
from lispnet.shell.logutil import RateLimitedLog
from lispnet.wire.control import Ecm, MapReply, MapRequest, parse_control
from lispnet.wire.enums import Action
from lispnet.wire.prefix import EidPrefix
from lispnet.wire.records import EidRecord


@pytest.mark.parametrize(
    "data,kind",
    [
        (b"", udp.UNKNOWN),
        (b"\x10", udp.MAP_REQUEST),
        (b"\x20\x00", udp.MAP_REPLY),
        (b"\x30", udp.MAP_REGISTER),
        (b"\x40", udp.MAP_NOTIFY),
        (b"\x50", udp.MAP_NOTIFY_ACK),
        (b"\x60", udp.MAP_REFERRAL),
        (b"\x70", udp.INFO_REQUEST),
        (b"\x78", udp.INFO_REPLY),
        (b"\x80\x00", udp.ECM),
        (b"\x84\x00", udp.ECM_DDT),
        (b"\x82\x00", udp.ECM_TO_ETR),
        (b"\x81\x00", udp.ECM_TO_MS),
        (b"\x80\x40", udp.ECM_RTR),
        (b"\x80\x20", udp.ECM_RTR),
        (b"\x88\x00", udp.ECM),  # S bit alone: still for the MR
        (b"\xf0", udp.SHARED_EXTENSION),
        (b"\x90", udp.UNKNOWN),
        (b"\x00", udp.UNKNOWN),
    ],
)
def test_classify(data: bytes, kind: str) -> None:
    assert udp.classify(data) == kind


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    rl = RateLimitedLog(logging.getLogger("t.rl"), burst=2, interval_s=10, clock=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="t.rl"):
        results = [rl.info("k", "msg %d", i) for i in range(5)]
        assert results == [True, True, False, False, False]
        assert rl.info("other", "other key") is True
        t[0] = 11.0
        assert rl.info("k", "again")
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["msg 0", "msg 1", "other key", "again (3 similar suppressed)"]
    assert rl.suppressed_total == 3


def test_rate_limited_log_bounded_keys() -> None:
    rl = RateLimitedLog(logging.getLogger("t.rl2"), max_keys=10)
    for i in range(100):
        rl.warning(i, "x")
    assert len(rl._buckets) == 10


def test_lig_request_is_an_ecm_map_request() -> None:
    data = build_request(EidPrefix.host("10.1.1.1", 7), 0xABC, ip_address("192.0.2.1"), 40000)
    ecm = parse_control(data)
    assert isinstance(ecm, Ecm) and not (ecm.to_ms or ecm.to_etr or ecm.ddt)
    assert ecm.inner_sport == 40000 and ecm.inner_dport == 4342
    assert ecm.inner_src == ip_address("192.0.2.1") and ecm.inner_dst == ip_address("10.1.1.1")
    req = ecm.message
    assert isinstance(req, MapRequest) and req.nonce == 0xABC
    assert req.itr_rlocs == (ip_address("192.0.2.1"),)
    assert req.records[0].prefix == EidPrefix.host("10.1.1.1", 7)


def test_lig_record_view_negative() -> None:
    rec = EidRecord.for_prefix(EidPrefix.parse("8.0.0.0/7"), (), ttl=15, action=Action.NATIVELY_FORWARD)
    v = record_view(rec)
    assert v["negative"] and v["action"] == "natively-forward" and v["eid-prefix"] == "8.0.0.0/7"


def test_show_prefix_matching() -> None:
    r = CliRunner().invoke(app, ["show", "reg", "--api", "http://127.0.0.1:1"])
    assert r.exit_code == 1 and "cannot reach" in r.output
    r = CliRunner().invoke(app, ["show", "s", "--api", "http://127.0.0.1:1"])
    assert r.exit_code != 0 and "ambiguous" in r.output


@pytest.mark.anyio
async def test_map_resolver_only_node_forwards_to_map_server(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    ms_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ms_sock.bind(("127.0.0.1", 0))
    ms_sock.setblocking(False)
    itr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    itr.bind(("127.0.0.1", 0))
    itr.setblocking(False)
    ms_port = ms_sock.getsockname()[1]
    cfg = parse_config(f"""
[node]
name = "mr1"
roles = ["map-resolver"]
api = "off"
control-addresses = ["127.0.0.1"]
control-port = 0
[[map-server]]
address = "127.0.0.1"
port = {ms_port}
eid-prefixes = ["10.0.0.0/8"]
""")
    d = Daemon(cfg, install_signal_handlers=False)
    await d.start()
    try:
        port = d.control_port
        req = build_request(EidPrefix.host("10.1.1.1"), 1, ip_address("127.0.0.1"), itr.getsockname()[1])
        await loop.sock_sendto(itr, req, ("127.0.0.1", port))
        fwd, _ = await asyncio.wait_for(loop.sock_recvfrom(ms_sock, 65535), 2)
        ecm = parse_control(fwd)
        assert isinstance(ecm, Ecm) and ecm.to_ms and isinstance(ecm.message, MapRequest)
        # not claimed by any Map-Server: the MR answers negatively itself
        req = build_request(EidPrefix.host("192.0.2.1"), 2, ip_address("127.0.0.1"), itr.getsockname()[1])
        await loop.sock_sendto(itr, req, ("127.0.0.1", port))
        rep, _ = await asyncio.wait_for(loop.sock_recvfrom(itr, 65535), 2)
        reply = parse_control(rep)
        assert isinstance(reply, MapReply) and reply.nonce == 2 and reply.records[0].is_negative
        assert reply.records[0].ttl == 15
        st = d.stats()
        assert st["roles"]["mapping"]["map-resolver"]["requests"]["forwarded-to-map-server"] == 1
        assert d.bugs == 0
    finally:
        await d.stop()
        ms_sock.close()
        itr.close()


def test_lan_gro_settings_reach_the_backends() -> None:
    """``[node] lan-gro`` / ``lan-batch-us`` / ``tun-udp-offload`` reach the TUN and VXLAN
    backends the daemon builds (nothing is started here)."""
    import logging

    from lispnet.config.load import parse_config
    from lispnet.dataplane.tun import TunDataplane
    from lispnet.shell.xtr_role import make_dataplane

    cfg = parse_config({"node": {"name": "x", "roles": ["itr"], "lan-gro": False, "lan-batch-us": 50}})
    assert cfg.node.lan_gro is False and cfg.node.lan_batch_us == 50 and cfg.node.tun_udp_offload is True
    log = logging.getLogger("t")
    off = make_dataplane("tun", log, None, True, True, cfg.node.lan_gro, cfg.node.lan_batch_us)
    on = make_dataplane("tun", log, None, True, True, True, 50)
    assert isinstance(off, TunDataplane) and isinstance(on, TunDataplane)
    assert off._lan is None and on._lan is not None and on._lan.batch_us == 50
    vx = make_dataplane("vxlan-gpe", log, None, lan_gro=True, lan_batch_us=7)
    if type(vx).__name__ == "VxlanDataplane":  # the kernel may lack VXLAN-GPE: TUN fallback
        assert vx._lan is not None and vx._lan.batch_us == 7  # type: ignore[union-attr]
