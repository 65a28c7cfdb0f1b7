"""``lispnet lig EID --map-resolver ADDR``: the LISP Internet Groper (RFC 6835).

Sends a real Map-Request for one EID, encapsulated in an ECM to the Map-Resolver's
control port (4342), from an ephemeral UDP port that is also the inner UDP source port
and whose address is the ITR-RLOC, so the Map-Reply (from the Map-Resolver, the
Map-Server by proxy, or the ETR itself) comes straight back to us.  Prints the mapping
records, their locators and TTL, or the negative reply and its action, with the round
trip time.  Retries ``--count`` times; exits 1 when nothing answers.

This module is a client only: it uses the wire codec, never the engines or the daemon.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import typer

from ..wire.address import NO_ADDRESS, Address, parse_address
from ..wire.enums import Action
from ..wire.prefix import EidPrefix
from ..wire.records import EidRecord

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class LigResult:
    """What one lig query found."""

    eid: EidPrefix
    map_resolver: tuple[str, int]
    reply_from: tuple[str, int] | None
    rtt_s: float | None
    records: tuple[EidRecord, ...]
    attempts: int
    nonce: int | None

    @property
    def answered(self) -> bool:
        return self.reply_from is not None


def action_name(a: int) -> str:
    try:
        return Action(a).name.lower().replace("_", "-")
    except ValueError:  # pragma: no cover - open enum never fails
        return str(a)


def record_view(rec: EidRecord) -> dict[str, Any]:
    try:
        p = rec.prefix
        prefix = f"{p.address}/{p.mask_len}"
        iid = p.iid
    except ValueError:
        prefix, iid = f"{rec.eid}/{rec.mask_len}", 0
    return {
        "eid-prefix": prefix,
        "instance-id": iid,
        "ttl": rec.ttl,
        "action": action_name(rec.action),
        "authoritative": rec.authoritative,
        "negative": rec.is_negative,
        "map-version": rec.map_version,
        "rlocs": [
            {
                "address": str(loc.address),
                "priority": loc.priority,
                "weight": loc.weight,
                "m-priority": loc.m_priority,
                "m-weight": loc.m_weight,
                "reachable": loc.reachable,
                "local": loc.local,
                "probed": loc.probed,
            }
            for loc in rec.locators
        ],
    }


def result_view(r: LigResult) -> dict[str, Any]:
    return {
        "eid": str(r.eid.address),
        "instance-id": r.eid.iid,
        "map-resolver": f"{r.map_resolver[0]}:{r.map_resolver[1]}",
        "answered": r.answered,
        "reply-from": f"{r.reply_from[0]}:{r.reply_from[1]}" if r.reply_from else None,
        "rtt": r.rtt_s,
        "attempts": r.attempts,
        "nonce": f"0x{r.nonce:016x}" if r.nonce is not None else None,
        "records": [record_view(rec) for rec in r.records],
    }


def _local_address_towards(dst: IPAddr, port: int) -> IPAddr:
    """The source address the kernel would use towards ``dst`` (no packet is sent)."""
    fam = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.connect((str(dst), port))
        return ipaddress.ip_address(s.getsockname()[0].split("%", 1)[0])


def build_request(
    eid: EidPrefix, nonce: int, itr_rloc: IPAddr, sport: int, source_eid: Address | None = None
) -> bytes:
    """The ECM-encapsulated Map-Request bytes for ``eid``."""
    from ..wire.control import Ecm, MapRequest, RequestRecord

    req = MapRequest(
        nonce=nonce,
        source_eid=source_eid if source_eid is not None else NO_ADDRESS,
        itr_rlocs=(itr_rloc,),
        records=(RequestRecord.for_prefix(eid),),
    )
    # inner IP header: towards the EID when it is an IP address of the RLOC's family,
    # from the source EID when it is one; otherwise the RLOC / the MR family's any-address
    inner_dst: IPAddr
    inner_src: IPAddr = itr_rloc
    if isinstance(eid.address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        inner_dst = eid.address
        if inner_dst.version != itr_rloc.version:
            inner_src = ipaddress.ip_address("::" if inner_dst.version == 6 else "0.0.0.0")
    else:
        inner_dst = itr_rloc
    if isinstance(source_eid, ipaddress.IPv4Address | ipaddress.IPv6Address) and source_eid.version == inner_dst.version:
        inner_src = source_eid
    ecm = Ecm(message=req, inner_src=inner_src, inner_dst=inner_dst, inner_sport=sport)
    return ecm.to_bytes()


def lig(
    eid: EidPrefix,
    map_resolver: IPAddr,
    port: int = 4342,
    timeout_s: float = 2.0,
    count: int = 3,
    source: IPAddr | None = None,
    source_eid: Address | None = None,
) -> LigResult:
    """Query ``map_resolver`` for ``eid``; blocking, at most ``count * timeout_s`` seconds."""
    from ..wire.control import MapReply, parse_control
    from ..wire.errors import DecodeError

    local = source if source is not None else _local_address_towards(map_resolver, port)
    fam = socket.AF_INET6 if map_resolver.version == 6 else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        sock.bind((str(local), 0))
        sport = sock.getsockname()[1]
        sent: dict[int, float] = {}
        last_nonce: int | None = None
        for attempt in range(1, max(1, count) + 1):
            nonce = secrets.randbits(64)
            last_nonce = nonce
            data = build_request(eid, nonce, local, sport, source_eid)
            sent[nonce] = time.perf_counter()
            sock.sendto(data, (str(map_resolver), port))
            deadline = time.monotonic() + timeout_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    reply, addr = sock.recvfrom(65535)
                except TimeoutError:
                    break
                t = time.perf_counter()
                try:
                    msg = parse_control(reply)
                except DecodeError:
                    continue
                if isinstance(msg, MapReply) and msg.nonce in sent:
                    return LigResult(
                        eid=eid,
                        map_resolver=(str(map_resolver), port),
                        reply_from=(str(addr[0]), int(addr[1])),
                        rtt_s=t - sent[msg.nonce],
                        records=tuple(msg.records),
                        attempts=attempt,
                        nonce=msg.nonce,
                    )
        return LigResult(eid, (str(map_resolver), port), None, None, (), max(1, count), last_nonce)
    finally:
        sock.close()


def render(r: LigResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    where = f"{r.map_resolver[0]}:{r.map_resolver[1]}"
    console.print(f"Send map-request to {where} for {r.eid.address}" + (f" iid {r.eid.iid}" if r.eid.iid else "") + " ...")
    if not r.answered:
        console.print(f"*** No map-reply received from {where} after {r.attempts} attempt(s) ***")
        return
    assert r.reply_from is not None and r.rtt_s is not None
    console.print(f"Received map-reply from {r.reply_from[0]}:{r.reply_from[1]} with rtt {r.rtt_s:.6f} secs")
    for rec in r.records:
        v = record_view(rec)
        iid = f" iid {v['instance-id']}" if v["instance-id"] else ""
        console.print()
        if v["negative"]:
            console.print(
                f"Negative mapping entry for EID {r.eid.address}: {v['eid-prefix']}{iid}, "
                f"record ttl: {v['ttl']} mins, action: {v['action']}"
            )
            continue
        console.print(
            f"Mapping entry for EID {r.eid.address}: {v['eid-prefix']}{iid}, record ttl: {v['ttl']} mins, "
            f"auth bit: {'set' if v['authoritative'] else 'not set'}"
        )
        table = Table(show_edge=False, box=None, pad_edge=False)
        for col in ("Locator", "State", "Priority/Weight", "M-Priority/Weight"):
            table.add_column(col)
        for loc in v["rlocs"]:
            table.add_row(
                loc["address"],
                "up" if loc["reachable"] else "down",
                f"{loc['priority']}/{loc['weight']}",
                f"{loc['m-priority']}/{loc['m-weight']}",
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("lig")
    def lig_cmd(
        eid: str = typer.Argument(..., help="EID to look up: IPv4, IPv6 or MAC address ([IID]addr accepted)."),
        map_resolver: str = typer.Option(..., "--map-resolver", "-m", help="Map-Resolver address (ADDR or ADDR:PORT)."),
        iid: int = typer.Option(0, "--iid", help="Instance-id."),
        timeout: float = typer.Option(2.0, "--timeout", "-t", help="Seconds to wait for each reply."),
        count: int = typer.Option(3, "--count", "-c", help="Map-Requests to send before giving up."),
        source: str | None = typer.Option(None, "--source", help="Local address (ITR-RLOC) to send from."),
        source_eid: str | None = typer.Option(None, "--source-eid", help="Source EID to put in the request."),
        port: int = typer.Option(4342, "--port", help="Map-Resolver control port."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Look up an EID like RFC 6835 lig: send an ECM Map-Request, print the Map-Reply."""
        try:
            prefix = EidPrefix.parse(eid, iid)
            prefix = EidPrefix.host(prefix.address, prefix.iid)
            mr_host, mr_port = _split(map_resolver, port)
            mr = ipaddress.ip_address(mr_host)
            src = ipaddress.ip_address(source) if source else None
            seid = parse_address(source_eid) if source_eid else None
        except ValueError as e:
            typer.echo(f"lig: {e}", err=True)
            raise typer.Exit(2) from None
        if src is not None and src.version != mr.version:
            typer.echo("lig: --source and --map-resolver must be of one address family", err=True)
            raise typer.Exit(2)
        try:
            result = lig(prefix, mr, mr_port, timeout, count, src, seid)
        except OSError as e:
            typer.echo(f"lig: {e}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            typer.echo(json.dumps(result_view(result), indent=2))
        else:
            render(result)
        if not result.answered:
            raise typer.Exit(1)


def _split(text: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, _, p = text.partition(":")
        return host, int(p)
    return text, default_port
