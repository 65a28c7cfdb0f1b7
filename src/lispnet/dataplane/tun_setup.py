"""Kernel-side set-up of the TUN data plane (a mixin of ``TunDataplane``): devices up,
per-instance routing tables and policy rules, the tunnel-offload TAP, the LAN interfaces
set up for UDP super-packets (``tun_uso``, ``lan_gro``), and their removal.  Runs on netlink threads
(``netlink.in_thread``), never on the forwarding thread."""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..wire.prefix import EidPrefix
from . import netlink
from .lan_gro import LanGro

log = logging.getLogger(__name__)

TABLE_BASE = 0x10000
TCP_TABLE_BASE = 0x2000000
"""Routing table of an instance's TCP TUN (``TCP_TABLE_BASE + iid``)."""
RULE_PRIORITY = 1000
TUN_TXQLEN = 4096


class TunSetup:
    """Routes, rules and devices for ``TunDataplane``."""

    mtu: int
    default_route: bool
    tun_prefix: str
    _instances: dict[int, str]
    _routes: dict[int, list[EidPrefix]]
    _created_tables: set[int]
    _tcp_fds: dict[int, int]
    _uso: set[int]
    _lan: LanGro | None

    def device(self, iid: int) -> str:
        """The TUN of instance ``iid``."""
        return f"{self.tun_prefix}{iid}"

    def tcp_device(self, iid: int) -> str:
        """The TUN that takes an instance's TCP (and merged UDP) from its LAN (tunnel offload only)."""
        return f"{self.tun_prefix}{iid}t"

    def table(self, iid: int) -> int | None:
        """The routing table of an instance bound to a LAN (None: the main table)."""
        return TABLE_BASE + iid if self._instances.get(iid) else None

    @staticmethod
    def _cleanup_tables(tables: list[int]) -> None:
        with netlink.open_ipr() as ipr:
            for table in tables:
                netlink.delete_rules_for_table(ipr, table)
                netlink.flush_table(ipr, table)

    def _tun_up(self, ipr: Any, dev: str) -> None:
        netlink.link_up(ipr, dev, mtu=self.mtu)
        try:  # bursts of a TCP window arrive faster than one read per packet drains them
            ipr.link("set", index=netlink.require_index(ipr, dev), txqlen=TUN_TXQLEN)
        except Exception as e:  # noqa: BLE001
            log.warning("cannot set txqlen on %s: %s", dev, e)
        for name in (f"net.ipv4.conf.{dev}.rp_filter", f"net.ipv6.conf.{dev}.disable_ipv6"):
            try:
                netlink.sysctl(name, 0)
            except OSError:
                pass

    @staticmethod
    def _configure_tap(name: str) -> None:
        for key, value in ((f"net.ipv6.conf.{name}.addr_gen_mode", 1), (f"net.ipv6.conf.{name}.accept_ra", 0),
                           (f"net.ipv4.conf.{name}.accept_local", 1), (f"net.ipv4.conf.{name}.rp_filter", 0)):
            try:
                netlink.sysctl(key, value)
            except OSError:
                pass
        with netlink.open_ipr() as ipr:
            netlink.link_up(ipr, name)

    def _configure_instance(self, iid: int, dev: str) -> None:
        with netlink.open_ipr() as ipr:
            self._configure_instance_with(ipr, iid, dev)

    def _configure_instance_with(self, ipr: Any, iid: int, dev: str) -> None:
        self._tun_up(ipr, dev)
        lan = self._instances.get(iid, "")
        if lan:
            table = TABLE_BASE + iid
            self._created_tables.add(table)
            for cidr in netlink.addresses(ipr, lan):
                netlink.replace_route(ipr, cidr, dev=lan, table=table)
            if self.default_route:
                netlink.replace_route(ipr, "0.0.0.0/0", dev=dev, table=table)
                netlink.replace_route(ipr, "::/0", dev=dev, table=table)
            netlink.add_iif_rule(ipr, lan, table, RULE_PRIORITY)
            netlink.add_iif_rule(ipr, dev, table, RULE_PRIORITY)
            if iid in self._tcp_fds:
                self._configure_tcp_tun(ipr, iid, lan)
        self._install_routes_with(ipr, iid, self._routes.get(iid, []))

    def _configure_tcp_tun(self, ipr: Any, iid: int, lan: str) -> None:
        """TCP entering on ``lan`` -> the instance's TCP TUN (``ipproto tcp`` rule, own table)."""
        tdev = self.tcp_device(iid)
        table = TCP_TABLE_BASE + iid
        self._created_tables.add(table)
        self._tun_up(ipr, tdev)
        for cidr in netlink.addresses(ipr, lan):
            netlink.replace_route(ipr, cidr, dev=lan, table=table)
        if self.default_route:
            netlink.replace_route(ipr, "0.0.0.0/0", dev=tdev, table=table)
            netlink.replace_route(ipr, "::/0", dev=tdev, table=table)
        # the ETR writes decapsulated packets into the TCP TUN: they route like the LAN's
        netlink.add_iif_rule(ipr, tdev, TABLE_BASE + iid, RULE_PRIORITY)
        if iid in self._uso:  # UDP comes here only when the LAN merges it (else one datagram a read)
            if self._lan is None or not self._lan.enable(lan):
                self._uso.discard(iid)
        for family in (socket.AF_INET, socket.AF_INET6):
            have = {r.get_attr("FRA_IP_PROTO") for r in ipr.get_rules(family=family) if r.get_attr("FRA_TABLE") == table}
            for proto in (6, 17) if iid in self._uso else (6,):
                if proto not in have:
                    ipr.rule("add", iifname=lan, table=table, priority=RULE_PRIORITY - 1, family=family,
                             ip_proto=proto)

    def _install_routes(self, iid: int, prefixes: list[EidPrefix]) -> None:
        with netlink.open_ipr() as ipr:
            self._install_routes_with(ipr, iid, prefixes)

    def _install_routes_with(self, ipr: Any, iid: int, prefixes: list[EidPrefix]) -> None:
        dev = self.device(iid)
        for p in prefixes:
            netlink.replace_route(ipr, f"{p.address}/{p.mask_len}", dev=dev, table=self.table(iid))
            if iid in self._tcp_fds:
                netlink.replace_route(ipr, f"{p.address}/{p.mask_len}", dev=self.tcp_device(iid),
                                      table=TCP_TABLE_BASE + iid)


__all__ = ["RULE_PRIORITY", "TABLE_BASE", "TCP_TABLE_BASE", "TUN_TXQLEN", "TunSetup"]
