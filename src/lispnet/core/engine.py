"""The common surface of every sans-I/O role engine.

An engine never touches sockets, clocks, randomness or asyncio.  The shell feeds it
datagrams with ``receive(datagram, src, dst, now)``, drains ``poll_sends(now)`` and
``poll_events()``, and calls ``on_timer(now)`` when ``next_deadline()`` passes.  Tests do
the same with plain numbers for ``now`` (see tests/core/).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

IPAddr = IPv4Address | IPv6Address

CONTROL_PORT = 4342
DATA_PORT = 4341


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A UDP endpoint (address, port)."""

    address: IPAddr
    port: int

    def __str__(self) -> str:
        a = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{a}:{self.port}"


@dataclass(frozen=True, slots=True)
class Send:
    """A datagram an engine wants sent."""

    data: bytes
    """UDP payload."""
    dst: Endpoint
    """Destination address and port."""
    src: Endpoint | None = None
    """Source to send from (address and/or port); None = the node's control socket default."""


class Event:
    """Base of northbound facts (``MappingInstalled``, ``SiteRegistered``...)."""

    __slots__ = ()


class Engine(Protocol):
    """What the shell needs from a role engine."""

    def receive(self, datagram: bytes, src: Endpoint, dst: Endpoint, now: float) -> None: ...

    def poll_sends(self, now: float) -> list[Send]: ...

    def poll_events(self) -> list[Event]: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...
