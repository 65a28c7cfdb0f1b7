"""Pick a node's data-plane backend from its config (``dataplane = "tun" | "ebpf" | "vxlan-gpe" | "vxlan"``).

A kernel backend the node cannot run (no root, no BPF object, no VXLAN support) falls
back to the user-space TUN backend with one warning line saying why, so a lab or demo
still works everywhere.  The TUN class is imported lazily: it belongs to the xTR
shell and this module must not import it at load time.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import Dataplane

log = logging.getLogger(__name__)

KINDS = ("tun", "ebpf", "vxlan-gpe", "vxlan")


def _tun(**kwargs: Any) -> Dataplane:
    from .tun import TunDataplane  # lazy: owned by the xTR shell

    dp: Dataplane = TunDataplane(**kwargs)
    return dp


def make_dataplane(
    kind: str,
    *,
    netns: str | None = None,
    rloc_ifaces: list[str] | None = None,
    miss_to_stack: bool = False,
    fallback: bool = True,
    tun_kwargs: dict[str, Any] | None = None,
    lan_gro: bool = True,
    lan_batch_us: int = 20,
) -> Dataplane:
    """The backend for ``kind``; TUN (built with ``tun_kwargs``) when the kernel can't.

    ``fallback=False`` raises ``RuntimeError`` instead of falling back.  ``lan_gro`` /
    ``lan_batch_us``: GRO on the LAN interfaces (``lan_gro.LanGro``) for the VXLAN
    backends (the TUN backend takes them in ``tun_kwargs``; the eBPF one leaves LANs alone).
    """
    kind = kind.lower()
    if kind not in KINDS:
        raise ValueError(f"unknown dataplane {kind!r}; expected one of {', '.join(KINDS)}")
    reason = ""
    if kind == "ebpf":
        from . import ebpf

        ok, reason = ebpf.supported()
        if ok:
            return ebpf.EbpfDataplane(rloc_ifaces=rloc_ifaces, netns=netns, miss_to_stack=miss_to_stack)
    elif kind in ("vxlan-gpe", "vxlan"):
        try:
            from . import vxlan
        except ImportError as exc:  # pyroute2 missing
            ok, reason = False, f"pyroute2 unavailable: {exc}"
        else:
            ok, reason = vxlan.supported(kind)
            if ok:
                return vxlan.VxlanDataplane(kind, netns=netns, lan_gro=lan_gro, lan_batch_us=lan_batch_us)
    else:
        return _tun(**(tun_kwargs or {}))
    if not fallback:
        raise RuntimeError(f"dataplane {kind} unavailable: {reason}")
    log.warning("dataplane %s unavailable (%s); falling back to the user-space TUN data plane", kind, reason)
    return _tun(**(tun_kwargs or {}))
