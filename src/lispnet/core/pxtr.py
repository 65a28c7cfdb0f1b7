"""Proxy tunnel routers (RFC 6832; our spec ddt-nat-crypto-pubsub.md section 5).

* A **PITR** attracts traffic from non-LISP sites toward EIDs (it announces coarse EID
  aggregates into the underlay; the lab installs routes for ``eid_space`` into the PITR's
  TUN) and then behaves exactly like an ITR whatever the packet's source, except that its
  Map-Requests carry the p bit and no source EID.  It is an :class:`ItrEngine` built with
  ``pitr=True``.
* A **PETR** receives encapsulated traffic from ITRs for non-EID destinations (their
  negative natively-forward entries with use-petr), decapsulates it and forwards it
  natively.  It needs no control plane of its own: the data plane's decapsulation path
  accepts any inner destination when ``petr`` is on (see :class:`PetrPolicy`).

An xTR can be a PxTR too: the daemon then runs both its own ITR and the PITR's view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..wire.prefix import EidPrefix
from .engine import IPAddr
from .itr import ItrConfig, ItrEngine


@dataclass(frozen=True, slots=True)
class PitrConfig:
    """Configuration of the proxy-ITR role."""

    eid_space: tuple[EidPrefix, ...]
    """The EID aggregates this PITR attracts (routed into its TUN)."""
    map_resolvers: tuple[IPAddr, ...]
    """Map-Resolvers to query."""
    rlocs: tuple[IPAddr, ...]
    """Our RLOCs (ITR-RLOCs, outer sources)."""


@dataclass(frozen=True, slots=True)
class PetrPolicy:
    """How decapsulated traffic is delivered."""

    enabled: bool = False
    """Forward decapsulated packets to non-local destinations natively (PETR)."""
    local_eids: tuple[EidPrefix, ...] = ()
    """EID prefixes of the local site: always delivered into their instance."""

    def deliver_natively(self, iid: int, dst: IPAddr) -> bool:
        """True when a decapsulated packet to ``dst`` leaves natively rather than into the site."""
        if not self.enabled:
            return False
        host = EidPrefix.host(dst, iid)
        return not any(p.contains(host) for p in self.local_eids)


def make_pitr(config: PitrConfig, nonce_source: Callable[[], int], **itr_options: object) -> ItrEngine:
    """An ITR engine acting as PITR (p bit, no source EID)."""
    itr_config = ItrConfig(
        map_resolvers=config.map_resolvers,
        itr_rlocs=config.rlocs,
        pitr=True,
        **itr_options,  # type: ignore[arg-type]
    )
    return ItrEngine(itr_config, nonce_source)


__all__ = ["PetrPolicy", "PitrConfig", "make_pitr"]
