"""The one small interface every forwarding backend implements (TUN, eBPF, kernel VXLAN).

The ITR/ETR engines own the map-cache and the database-mappings; a backend only holds
what forwarding needs, written by the daemon from engine events:

* ``install(entry)`` / ``remove(iid, prefix)``: a map-cache entry (positive: RLOCs with
  priority/weight/up; negative: an action and optionally the PETR RLOCs to use).
* ``set_local_rlocs`` / ``set_instances``: which RLOCs are ours (decap targets and outer
  sources) and which instance-id maps to which local interface / routing table.
* misses are punted to the daemon through the ``on_miss`` callback given at ``start``,
  so the ITR sends a Map-Request; the next packets take the backend's fast path.
* ``stats()``: counters (encapsulated / decapsulated / misses / drops by reason, per RLOC).
* ``stop()`` removes everything the backend created (devices, programs, maps, routes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from ..wire.enums import Action
from ..wire.prefix import EidPrefix

IPAddr = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class FwdLocator:
    """One RLOC of a forwarding entry."""

    address: IPAddr
    """The RLOC."""
    priority: int = 1
    """Unicast priority (255 = unusable)."""
    weight: int = 100
    """Unicast weight."""
    up: bool = True
    """Reachable as far as the ITR knows (probing / LSBs / R bit)."""


@dataclass(frozen=True, slots=True)
class FwdEntry:
    """A map-cache entry as the data plane sees it."""

    prefix: EidPrefix
    """EID prefix, instance-id included."""
    locators: tuple[FwdLocator, ...] = ()
    """RLOC set; empty for a negative entry."""
    action: Action = Action.NO_ACTION
    """For negative entries: natively-forward, drop, send-map-request."""
    use_petr: bool = False
    """Negative entry whose traffic goes to the PETR (``locators`` then holds the PETR RLOCs)."""


@dataclass(frozen=True, slots=True)
class Miss:
    """A packet the backend could not forward (no map-cache entry)."""

    iid: int
    src: IPAddr
    dst: IPAddr
    packet: bytes
    """The inner packet (may be empty when the backend cannot hand it over)."""


MissCallback = Callable[[Miss], None]


class Dataplane(Protocol):
    """A forwarding backend.  All methods are called on the daemon's event loop."""

    name: str

    def start(self, on_miss: MissCallback) -> None: ...

    def stop(self) -> None: ...

    def set_local_rlocs(self, rlocs: list[IPAddr], lsb: int) -> None: ...

    def set_instances(self, instances: dict[int, str]) -> None:
        """instance-id -> local interface (or VRF) name where its EIDs live."""
        ...

    def install(self, entry: FwdEntry) -> None: ...

    def remove(self, prefix: EidPrefix) -> None: ...

    def stats(self) -> dict[str, int]: ...
