"""The daemon plumbing with a trivial engine: dispatch, sends, timers, bug counter,
API, state file, reload.  Real sockets on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lispnet.config.load import parse_config
from lispnet.config.model import NodeConfig
from lispnet.core.engine import Endpoint, Event, Send
from lispnet.shell import roles
from lispnet.shell.daemon import Daemon
from lispnet.shell.roles import RoleContext, RoleRuntime

pytestmark = pytest.mark.anyio


class Ping(Event):
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class EchoEngine:
    """Echoes Map-Request-typed datagrams; b"\\x1f..." raises; a timer fires once."""

    def __init__(self, timer_at: float | None) -> None:
        self.sends: list[Send] = []
        self.events: list[Event] = []
        self.timer_at = timer_at
        self.fired: list[float] = []
        self.received = 0

    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        self.received += 1
        if datagram.startswith(b"\x1f"):
            raise RuntimeError("boom")
        self.sends.append(Send(b"\x20" + datagram[1:], src))
        self.events.append(Ping(self.received))

    def poll_sends(self, now: float) -> list[Send]:
        out, self.sends = self.sends, []
        return out

    def poll_events(self) -> list[Event]:
        out, self.events = self.events, []
        return out

    def next_deadline(self) -> float | None:
        return self.timer_at

    def on_timer(self, now: float) -> None:
        self.fired.append(now)
        self.timer_at = None


class FakeRole:
    def __init__(self) -> None:
        self.engine: EchoEngine | None = None
        self.events: list[Event] = []
        self.restored: Any = None
        self.stopped = False
        self.reloaded: list[NodeConfig] = []
        self.state: dict[str, Any] = {"x": 1}

    def factory(self, ctx: RoleContext) -> RoleRuntime:
        self.engine = EchoEngine(ctx.clock() + 0.05)

        def restore(d: Any) -> None:
            self.restored = d

        def reload(cfg: NodeConfig) -> list[str]:
            self.reloaded.append(cfg)
            return ["test reloaded"]

        def stop() -> None:
            self.stopped = True

        return RoleRuntime(
            name="test",
            handlers={"map-request": self.engine},
            stats=lambda: {"received": self.engine.received if self.engine else 0},
            on_event=self.events.append,
            snapshot=lambda: self.state,
            restore=restore,
            reload=reload,
            stop=stop,
        )


@pytest.fixture
def test_role() -> Iterator[FakeRole]:
    roles.load_role_modules()
    saved = roles.factory_for("map-server")
    role = FakeRole()
    roles.register_role("map-server")(role.factory)
    yield role
    if saved is not None:
        roles.register_role("map-server")(saved)
    else:
        roles.unregister_role("map-server")


def node_toml(tmp_path: Path, extra: str = "") -> str:
    return f"""
[node]
name = "t1"
roles = ["map-server"]
api = "127.0.0.1:0"
control-addresses = ["127.0.0.1"]
control-port = 0
state-file = "{tmp_path / 'state.json'}"
{extra}
"""


@pytest.fixture
async def daemon(tmp_path: Path, test_role: FakeRole) -> AsyncIterator[Daemon]:
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path))
    d = Daemon(parse_config(path.read_text()), path, install_signal_handlers=False)
    await d.start()
    yield d
    await d.stop()


async def udp_roundtrip(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    try:
        await loop.sock_sendto(sock, payload, ("127.0.0.1", port))
        try:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), timeout)
        except TimeoutError:
            return None
        return data
    finally:
        sock.close()


async def test_dispatch_send_event_timer(daemon: Daemon, test_role: FakeRole) -> None:
    port = daemon.control_port
    assert port != 0
    assert await udp_roundtrip(port, b"\x10hello") == b"\x20hello"
    assert [e.n for e in test_role.events if isinstance(e, Ping)] == [1]
    await asyncio.sleep(0.1)
    assert test_role.engine is not None and len(test_role.engine.fired) == 1
    assert daemon.rx["map-request"] == 1 and daemon.tx["map-reply"] == 1
    # no engine handles map-register: counted, no reply
    assert await udp_roundtrip(port, b"\x30xx", timeout=0.2) is None
    assert daemon.unhandled["map-register"] == 1
    assert daemon.bugs == 0


async def test_engine_exception_counted_and_serving_continues(daemon: Daemon) -> None:
    port = daemon.control_port
    assert await udp_roundtrip(port, b"\x1fbad", timeout=0.2) is None
    assert daemon.bugs == 1
    assert await udp_roundtrip(port, b"\x10again") == b"\x20again"


async def test_api_and_metrics(daemon: Daemon) -> None:
    assert daemon.api is not None
    async with httpx.AsyncClient(base_url=f"http://{daemon.api.address}") as c:
        await udp_roundtrip(daemon.control_port, b"\x10x")
        r = await c.get("/")
        assert r.json()["name"] == "t1"
        st = (await c.get("/stats")).json()
        assert st["daemon"]["received"] == {"map-request": 1}
        assert st["roles"]["test"] == {"received": 1}
        m = (await c.get("/metrics")).text
        assert 'lispnet_control_received_total{kind="map-request"} 1.0' in m
        assert "lispnet_control_processing_seconds_bucket" in m
        assert "lispnet_bugs_total 0.0" in m
        assert (await c.get("/openapi.json")).json()["info"]["title"] == "lispnet"


async def test_state_file_written_and_restored(tmp_path: Path, test_role: FakeRole) -> None:
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path))
    d = Daemon(parse_config(path.read_text()), path, install_signal_handlers=False)
    await d.start()
    test_role.state = {"sites": ["a"]}
    d.state_changed()
    await asyncio.sleep(0.01)
    await d.stop()
    assert test_role.stopped
    doc = json.loads((tmp_path / "state.json").read_text())
    assert doc["roles"]["test"] == {"sites": ["a"]}
    d2 = Daemon(parse_config(path.read_text()), path, install_signal_handlers=False)
    await d2.start()
    assert test_role.restored == {"sites": ["a"]}
    await d2.stop()


async def test_reload_good_and_bad(tmp_path: Path, daemon: Daemon, test_role: FakeRole) -> None:
    assert daemon.config_path is not None
    daemon.config_path.write_text(node_toml(tmp_path, 'log-level = "debug"'))
    notes = await daemon.reload()
    assert "test reloaded" in notes and daemon.reloads == 1
    assert test_role.reloaded[-1].node.log_level == "debug"
    daemon.config_path.write_text("[node]\nname = 1\n")
    notes = await daemon.reload()
    assert daemon.reload_failures == 1 and daemon.config.node.log_level == "debug"
    assert any("node.name" in n for n in notes)


async def test_map_request_lane(daemon: Daemon, test_role: FakeRole) -> None:
    """An engine's ``receive_fast`` answer goes out at once, counted like a queued send;
    None falls back to the queued sends; an exception is a counted bug."""
    port = daemon.control_port
    engine = test_role.engine
    assert engine is not None
    calls: list[bytes] = []

    def lane(data: bytes, src: Endpoint, dst: Endpoint, now: float) -> tuple[bytes, str, int] | None:
        calls.append(data)
        if data.startswith(b"\x1f"):
            raise RuntimeError("boom")
        if data.endswith(b"queue"):
            engine.receive(data, src, dst, now)
            return None
        return b"\x20" + data[1:], str(src.address), src.port

    daemon._fast["map-request"] = lane
    assert await udp_roundtrip(port, b"\x10fast") == b"\x20fast"
    assert await udp_roundtrip(port, b"\x10queue") == b"\x20queue"
    assert await udp_roundtrip(port, b"\x1fbad", timeout=0.2) is None
    assert calls == [b"\x10fast", b"\x10queue", b"\x1fbad"]
    assert daemon.rx["map-request"] == 3 and daemon.tx["map-reply"] == 2
    assert daemon.bugs == 1 and daemon.send_failures == 0
    assert daemon.latency.snapshot()["map-request"][0][-1] == ("+Inf", 3.0)
    # no socket of the destination's family: a send failure, not a bug
    daemon._out.clear()
    assert await udp_roundtrip(port, b"\x10fast", timeout=0.2) is None
    assert daemon.send_failures == 1 and daemon.bugs == 1
