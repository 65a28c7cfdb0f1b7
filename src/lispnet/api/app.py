"""The REST API: a FastAPI app served by uvicorn on the daemon's own event loop.

Handlers are thin: they validate the request (pydantic models shared with the config),
call a service method of a role on the loop that owns the state, and return JSON views.
There are no threads and no locks (STYLE.md section 3 and 6).

Built-in resources (every node)::

    GET /              node: name, version, roles, control sockets, uptime
    GET /stats         daemon counters + each role's stats()
    GET /healthz       {"ok": true, "bugs": N}
    GET /metrics       Prometheus text format
    GET /openapi.json  the schema (FastAPI)

Roles add their own routers (``RoleRuntime.routers``): the mapping system's
``/sites``, ``/registrations``, ``/rejections``, ``/static-mappings`` (``api/mapping.py``),
the xTR's ``/map-cache`` and ``/database-mapping``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Sequence
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .. import __version__
from ..config.model import split_host_port

log = logging.getLogger("lispnet.api")


class RuntimeLike(Protocol):
    name: str
    routers: Sequence[Any]


class NodeHandle(Protocol):
    """What the API needs from the daemon (``shell.daemon.Daemon`` provides it)."""

    metrics: CollectorRegistry
    services: dict[str, Any]
    bugs: int

    @property
    def runtimes(self) -> Sequence[RuntimeLike]: ...

    def node_info(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...


def create_app(node: NodeHandle) -> FastAPI:
    """The app for one node; role routers are mounted as they are."""
    app = FastAPI(
        title="lispnet",
        version=__version__,
        description="Northbound API of a lispnet LISP node (RFC 9300/9301): mapping system and xTR state.",
    )
    app.state.node = node

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        node.bugs += 1
        log.error("BUG in API handler %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": f"internal error: {type(exc).__name__}"})

    @app.get("/", tags=["node"], summary="Node identity and sockets")
    async def root() -> dict[str, Any]:
        return node.node_info()

    @app.get("/stats", tags=["node"], summary="Daemon and role counters")
    async def stats() -> dict[str, Any]:
        return node.stats()

    @app.get("/healthz", tags=["node"], summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "bugs": node.bugs}

    @app.get("/metrics", tags=["node"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(node.metrics), media_type=CONTENT_TYPE_LATEST)

    for rt in node.runtimes:
        for router in rt.routers:
            app.include_router(router)
    return app


class _Server(uvicorn.Server):
    """uvicorn server that leaves signal handling to the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """Run an ASGI app on the current loop at ``HOST:PORT`` (port 0 = ephemeral)."""

    def __init__(self, app: Any, listen: str) -> None:
        self.app = app
        self.host, self.port = split_host_port(listen)
        self.server: _Server | None = None
        self.task: asyncio.Task[None] | None = None
        self.sock: socket.socket | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _bind(self) -> socket.socket:
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, stype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, stype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        self.sock = self._bind()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = _Server(config)
        self.task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        for _ in range(500):
            if self.server.started or self.task.done():
                break
            await asyncio.sleep(0.01)
        if self.task.done():
            exc = self.task.exception()
            raise RuntimeError(f"REST API failed to start: {exc}")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
            self.task = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


__all__ = ["ApiServer", "NodeHandle", "create_app"]
