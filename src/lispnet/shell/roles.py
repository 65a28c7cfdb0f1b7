"""The role registry: role name -> factory that builds a role's runtime from the config.

``lispnet run`` hosts any set of roles in one process (STYLE.md section 3: one loop owns
all state, the shell demultiplexes by message type).  A *role module* registers a factory
for one or more role names at import time; the daemon imports the modules listed in
:data:`ROLE_MODULES` (a missing module is skipped, like the CLI's sub-commands), then for
each role named in ``[node] roles`` calls the factory once.

Writing a role (the hook other modules use)
-------------------------------------------
::

    # src/lispnet/shell/xtr_role.py
    from .roles import RoleContext, RoleRuntime, register_role

    @register_role("itr", "etr", "xtr", "pitr", "petr", "pxtr", "rtr")
    def build_xtr(ctx: RoleContext) -> RoleRuntime:   # may also be ``async def``
        itr = ItrEngine(..., rng=ctx.rng)
        return RoleRuntime(
            name="xtr",
            covers=frozenset({"itr", "etr", "xtr"}) & ctx.config.roles,
            handlers={udp.MAP_REPLY: itr, udp.MAP_NOTIFY: etr, udp.ECM_TO_ETR: etr},
            engines=[itr, etr],
            routers=[my_api_router],          # served by the REST API
            services={"itr": itr},            # looked up by other roles / API
            stats=lambda: {...},              # shown by GET /stats and `lispnet show stats`
            on_event=handle_event,            # engine events (MappingInstalled -> dataplane)
            stop=async_cleanup,               # remove TUN devices, routes...
        )

What a role gets (:class:`RoleContext`):

* ``config``: the validated :class:`~lispnet.config.model.NodeConfig` (frozen);
* ``loop``: the daemon's asyncio loop (everything runs on it, no threads, no locks);
* ``send(Send)``: queue a datagram on the node's control sockets.  ``Send.src`` None
  means the control socket of the destination's family; ``src.port == 0`` means an
  ephemeral-port socket of the daemon (replies to it are demultiplexed like any other);
  ``src.address`` picks the control socket bound to that address;
* ``open_udp(local, callback)``: open an extra socket (e.g. the 4341 data port);
* ``clock()``: ``loop.time()``, the ``now`` to pass to engines; ``wall()``: Unix time
  for display;
* ``rng``: a ``random.Random`` to inject into engines (nonces, jitter);
* ``logger`` and ``ratelog`` (:class:`~lispnet.shell.logutil.RateLimitedLog`) for anything
  a peer can trigger;
* ``metrics``: the node's prometheus ``CollectorRegistry``; register collectors there;
* ``services``: a dict shared by all roles (a Map-Resolver finds the co-located
  Map-Server under ``"map-server"``); roles built earlier are visible to later ones
  (order: :data:`ROLE_ORDER`);
* ``kick()``: call after touching an engine outside ``receive``/``on_timer`` (an API
  write, a data-plane miss): the daemon drains every engine's sends and events and
  re-arms the timer;
* ``state_changed()``: call after an API write that must survive a restart; the daemon
  then writes the state file (from every runtime's ``snapshot``).

What a role provides (:class:`RoleRuntime`):

* ``handlers``: dispatch key (``lispnet.shell.udp`` constants: ``map-register``,
  ``ecm``, ``ecm-to-etr``...) -> engine whose ``receive`` gets the raw datagram.  If
  two roles claim one key, the role built first keeps it (a warning is logged); a
  role hosting several engines that share a key demultiplexes itself (an "engine" is
  anything with the Engine protocol);
* ``engines``: every engine whose ``poll_sends``/``poll_events``/``next_deadline``/
  ``on_timer`` the daemon must drive (handlers are added automatically);
* ``routers``: FastAPI ``APIRouter``\\ s mounted on the REST API;
* ``services``: named objects published into ``ctx.services`` (API handlers use them);
* ``stats()``: a JSON-able dict of counters for ``GET /stats``;
* ``on_event(event)``: northbound facts from any engine of the node;
* ``snapshot()`` / ``restore(data)``: JSON-able state for the state file;
* ``reload(new_config)``: apply a changed config on SIGHUP (return a list of what could
  not be applied without a restart); ``stop()``: clean up (sync or async).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.model import NodeConfig
from ..core.engine import Endpoint, Engine, Event, Send
from .logutil import RateLimitedLog
from .udp import DatagramCallback, UdpEndpoint

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("lispnet.roles")


@dataclass(slots=True)
class RoleContext:
    """Everything a role factory may use (see the module docstring)."""

    config: NodeConfig
    loop: asyncio.AbstractEventLoop
    send: Callable[[Send], None]
    open_udp: Callable[[Endpoint, DatagramCallback], Awaitable[UdpEndpoint]]
    clock: Callable[[], float]
    wall: Callable[[], float]
    rng: random.Random
    logger: logging.Logger
    ratelog: RateLimitedLog
    metrics: CollectorRegistry
    services: dict[str, Any]
    kick: Callable[[], None]
    state_changed: Callable[[], None]


StopFn = Callable[[], Awaitable[None] | None]


@dataclass(slots=True)
class RoleRuntime:
    """What a role factory returns (see the module docstring)."""

    name: str
    covers: frozenset[str] = frozenset()
    """Role names this runtime implements (so they are not built twice); ``name`` is added."""
    handlers: Mapping[str, Engine] = field(default_factory=dict)
    engines: Sequence[Engine] = ()
    routers: Sequence[Any] = ()
    """fastapi.APIRouter instances."""
    services: Mapping[str, Any] = field(default_factory=dict)
    stats: Callable[[], Mapping[str, Any]] | None = None
    on_event: Callable[[Event], None] | None = None
    snapshot: Callable[[], Any] | None = None
    restore: Callable[[Any], None] | None = None
    reload: Callable[[NodeConfig], Sequence[str]] | None = None
    stop: StopFn | None = None


RoleFactory = Callable[[RoleContext], "RoleRuntime | Awaitable[RoleRuntime]"]

ROLE_MODULES: list[str] = ["lispnet.shell.mapping_role", "lispnet.shell.xtr_role", "lispnet.shell.ddt_role"]
"""Modules imported to fill the registry (each calls :func:`register_role`)."""

ROLE_ORDER: tuple[str, ...] = (
    "map-server", "map-resolver", "ddt-node", "etr", "itr", "xtr", "rtr", "petr", "pitr", "pxtr",
)
"""Build order: providers of shared services first."""

_REGISTRY: dict[str, RoleFactory] = {}


def register_role(*names: str) -> Callable[[RoleFactory], RoleFactory]:
    """Decorator: register ``factory`` for each role name (the last registration wins,
    so a test can override a role)."""

    def deco(factory: RoleFactory) -> RoleFactory:
        for n in names:
            _REGISTRY[n] = factory
        return factory

    return deco


def unregister_role(name: str) -> None:
    _REGISTRY.pop(name, None)


def load_role_modules(modules: Sequence[str] = ()) -> None:
    """Import the role modules (idempotent); a module that does not exist is skipped."""
    for mod in (*ROLE_MODULES, *modules):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            log.debug("role module %s not present", mod)


def factory_for(role: str) -> RoleFactory | None:
    return _REGISTRY.get(role)


def registered_roles() -> list[str]:
    return sorted(_REGISTRY)


def build_order(roles: Sequence[str]) -> list[str]:
    rank = {r: i for i, r in enumerate(ROLE_ORDER)}
    return sorted(dict.fromkeys(roles), key=lambda r: (rank.get(r, len(rank)), r))


async def build_roles(ctx: RoleContext) -> list[RoleRuntime]:
    """Build a runtime for every configured role (each factory at most once)."""
    missing = [r for r in ctx.config.node.roles if factory_for(r) is None]
    if missing:
        raise RoleError(
            "no implementation for role(s): " + ", ".join(missing) + " (available: " + ", ".join(registered_roles()) + ")"
        )
    runtimes: list[RoleRuntime] = []
    covered: set[str] = set()
    built: set[int] = set()
    for role in build_order(ctx.config.node.roles):
        if role in covered:
            continue
        factory = factory_for(role)
        assert factory is not None
        if id(factory) in built:
            continue
        result = factory(ctx)
        runtime = await result if inspect.isawaitable(result) else result
        assert isinstance(runtime, RoleRuntime)
        runtime.covers = frozenset(runtime.covers | {role})
        covered |= runtime.covers
        built.add(id(factory))
        ctx.services.update(runtime.services)
        runtimes.append(runtime)
        log.info("role %s built (covers %s)", runtime.name, ", ".join(sorted(runtime.covers)))
    return runtimes


async def stop_runtime(runtime: RoleRuntime) -> None:
    if runtime.stop is None:
        return
    result = runtime.stop()
    if inspect.isawaitable(result):
        await result


class RoleError(RuntimeError):
    """A role cannot be built from this config."""


__all__ = [
    "ROLE_MODULES",
    "ROLE_ORDER",
    "RoleContext",
    "RoleError",
    "RoleFactory",
    "RoleRuntime",
    "build_order",
    "build_roles",
    "factory_for",
    "load_role_modules",
    "register_role",
    "registered_roles",
    "stop_runtime",
    "unregister_role",
]
