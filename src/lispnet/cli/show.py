"""``lispnet show ...``: router-style views of a running node, as a REST client only.

Every sub-command GETs one API resource (``--api URL``, default ``$LISPNET_API`` or
http://127.0.0.1:8080) and renders it as a rich table, or prints the JSON with
``--json``.  Sub-command names accept unambiguous prefixes (``show reg``).

Other modules add their own views with :func:`add_show_command` (a generic "GET this
path and render these columns" command) or by registering a function on :data:`show_app`
with :func:`api_get` / :func:`render_rows`; this module never imports the engines.

    lispnet show site [NAME]
    lispnet show registrations [--iid N] [--eid P] [--site S]
    lispnet show rejections
    lispnet show static-mappings
    lispnet show stats
    lispnet show map-cache [--iid N] [--eid P]        (served by xTR roles)
    lispnet show database-mapping                      (served by xTR roles)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

DEFAULT_API = "http://127.0.0.1:8080"


class PrefixGroup(TyperGroup):
    """A command group that accepts unambiguous command-name prefixes."""

    # typer vendors its own click: keep the signatures loose (Any) to match either
    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            return cmd
        matches = [n for n in self.list_commands(ctx) if n.startswith(cmd_name)]
        if len(matches) == 1:
            return super().get_command(ctx, matches[0])
        if len(matches) > 1:
            ctx.fail(f"ambiguous command {cmd_name!r}: {', '.join(sorted(matches))}")
        return None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd is not None else None), cmd, rest


show_app = typer.Typer(
    name="show",
    help="Show the state of a running node (through its REST API).",
    cls=PrefixGroup,
    no_args_is_help=True,
)

ApiOption = typer.Option(None, "--api", help="API base URL (default: $LISPNET_API or http://127.0.0.1:8080).")
JsonOption = typer.Option(False, "--json", "-j", help="Print the raw JSON.")


# --- helpers other modules may use ---------------------------------------------------


class ApiError(Exception):
    pass


def api_url(api: str | None) -> str:
    url = api or os.environ.get("LISPNET_API") or DEFAULT_API
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def api_get(api: str | None, path: str, params: Mapping[str, Any] | None = None, timeout: float = 5.0) -> Any:
    """GET ``path`` from the node's API and return the decoded JSON; ApiError on failure."""
    import httpx

    base = api_url(api)
    clean = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        r = httpx.get(base + path, params=clean, timeout=timeout)
    except httpx.HTTPError as e:
        raise ApiError(f"cannot reach the lispnet API at {base}: {e}") from None
    if r.status_code == 404:
        try:
            detail = r.json().get("detail", "not found")
        except ValueError:
            detail = "not found"
        raise ApiError(f"{path}: {detail}")
    if r.status_code >= 400:
        raise ApiError(f"{path}: HTTP {r.status_code}: {r.text[:300]}")
    try:
        return r.json()
    except ValueError:
        raise ApiError(f"{path}: not JSON") from None


def fail(msg: str, code: int = 1) -> typer.Exit:
    typer.echo(f"lispnet show: {msg}", err=True)
    return typer.Exit(code)


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: a header and how to get the cell from a row dict."""

    header: str
    get: Callable[[Mapping[str, Any]], Any]
    justify: str = "left"


def col(header: str, key: str | Callable[[Mapping[str, Any]], Any], justify: str = "left") -> Column:
    if isinstance(key, str):
        k = key
        return Column(header, lambda row: row.get(k), justify)
    return Column(header, key, justify)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list | tuple):
        return "\n".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def render_rows(title: str, columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], empty: str = "none") -> None:
    """Print ``rows`` as a rich table with ``columns``."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not rows:
        console.print(f"{title}: {empty}")
        return
    table = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        table.add_column(c.header, justify=c.justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(cell(c.get(row)) for c in columns))
    console.print(table)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False))


def add_show_command(
    name: str,
    path: str,
    columns: Sequence[Column],
    *,
    help: str,
    title: str | None = None,
    rows_key: str | None = None,
    with_iid_eid: bool = False,
) -> None:
    """Add ``lispnet show NAME`` = GET ``path`` and render ``columns`` (``rows_key``
    picks the list out of an object response)."""

    def command(
        iid: int | None = typer.Option(None, "--iid", help="Only this instance-id.") if with_iid_eid else None,
        eid: str | None = typer.Option(None, "--eid", help="Only entries covering / inside this EID or prefix.") if with_iid_eid else None,
        api: str | None = ApiOption,
        as_json: bool = JsonOption,
    ) -> None:
        params: dict[str, Any] = {"iid": iid, "eid": eid} if with_iid_eid else {}
        try:
            data = api_get(api, path, params)
        except ApiError as e:
            raise fail(str(e)) from None
        if as_json:
            print_json(data)
            return
        rows = data.get(rows_key, []) if rows_key and isinstance(data, dict) else data
        render_rows(title or name, columns, rows if isinstance(rows, list) else [rows])

    command.__doc__ = help
    if not with_iid_eid:
        # typer reads the signature: drop the iid/eid options entirely
        def plain(api: str | None = ApiOption, as_json: bool = JsonOption) -> None:
            command(None, None, api, as_json)

        plain.__doc__ = help
        show_app.command(name)(plain)
    else:
        show_app.command(name)(command)


# --- formatting of the mapping-system views -------------------------------------------


def when(ts: Any) -> str:
    """Unix time -> local 'HH:MM:SS' (today) or 'YYYY-mm-dd HH:MM:SS'."""
    if ts is None:
        return "-"
    try:
        t = _dt.datetime.fromtimestamp(float(ts))
        if t.date() == _dt.date.today():
            return t.strftime("%H:%M:%S")
        return t.strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def ago(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = int(float(seconds))
    if s < 0:
        s = 0
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def eid_text(row: Mapping[str, Any]) -> str:
    p = row.get("eid-prefix") or row.get("prefix") or "?"
    iid = row.get("instance-id") or 0
    return f"[{iid}]{p}" if iid else str(p)


def rlocs_text(row: Mapping[str, Any]) -> list[str]:
    out = []
    for loc in row.get("rlocs") or []:
        state = "" if loc.get("reachable", True) else " down"
        out.append(f"{loc.get('address')}  {loc.get('priority', '?')}/{loc.get('weight', '?')}{state}")
    return out


def registrants_text(row: Mapping[str, Any]) -> list[str]:
    regs = row.get("registrants")
    if regs is None:
        return [str(row.get("registrant", "-"))]
    return [str(r.get("registrant", "-")) for r in regs]


def _latest(row: Mapping[str, Any], key: str, pick: Callable[[list[float]], float]) -> Any:
    vals = [r.get(key) for r in row.get("registrants") or [] if r.get(key) is not None]
    if not vals and row.get(key) is not None:
        return row.get(key)
    return pick(vals) if vals else None


REGISTRATION_COLUMNS: list[Column] = [
    col("EID prefix", eid_text),
    col("Site", "site"),
    col("RLOCs (prio/weight)", rlocs_text),
    col("Registered by", registrants_text),
    col("First", lambda r: when(_latest(r, "first-registered", min))),
    col("Last", lambda r: when(_latest(r, "last-registered", max))),
    col("Expires in", lambda r: ago(_latest(r, "expires-in", max)) if _latest(r, "expires-in", max) is not None else "never"),
    col("Proxy", "proxy-reply"),
]

SITE_COLUMNS: list[Column] = [
    col("Site", "name"),
    col("EID prefixes", lambda s: [
        (f"[{p.get('instance-id')}]" if p.get("instance-id") else "") + str(p.get("prefix"))
        + (" +more-specifics" if p.get("accept-more-specifics") else "")
        for p in s.get("eid-prefixes") or []
    ]),
    col("Keys", lambda s: [f"{k.get('key-id')}: {k.get('algorithm')}" for k in s.get("authentication-keys") or []]),
    col("Registered", lambda s: s.get("registered", "-"), "right"),
    col("Rejected", lambda s: s.get("rejected", "-"), "right"),
    col("Enabled", "enabled"),
]

REJECTION_COLUMNS: list[Column] = [
    col("Site", lambda r: r.get("site") or "(unknown)"),
    col("Reason", "reason"),
    col("Count", "count", "right"),
    col("Last offender", lambda r: r.get("last-source") or r.get("last-offender")),
    col("Last EID", "last-eid"),
    col("Last time", lambda r: when(r.get("last-time"))),
    col("Detail", "detail"),
]

STATIC_COLUMNS: list[Column] = [
    col("EID prefix", eid_text),
    col("RLOCs (prio/weight)", rlocs_text),
    col("TTL", "ttl", "right"),
    col("Action", "action"),
]

MAP_CACHE_COLUMNS: list[Column] = [
    col("EID prefix", eid_text),
    col("RLOCs (prio/weight)", rlocs_text),
    col("Action", "action"),
    col("TTL", "ttl", "right"),
    col("Expires in", lambda r: ago(r.get("expires-in"))),
]

DATABASE_COLUMNS: list[Column] = [
    col("EID prefix", eid_text),
    col("RLOCs (prio/weight)", rlocs_text),
    col("TTL", "ttl", "right"),
]


@show_app.command("site")
def show_site(
    name: str | None = typer.Argument(None, help="One site (default: all)."),
    api: str | None = ApiOption,
    as_json: bool = JsonOption,
) -> None:
    """Map-Server sites: policy (keys hidden), registrations and rejections."""
    try:
        data = api_get(api, f"/sites/{name}" if name else "/sites")
    except ApiError as e:
        raise fail(str(e)) from None
    if as_json:
        print_json(data)
        return
    if name is None:
        render_rows("Sites", SITE_COLUMNS, data, empty="no sites configured")
        return
    from rich.console import Console

    console = Console(highlight=False)
    site = data.get("site", data)
    render_rows(f"Site {site.get('name')}", SITE_COLUMNS, [site])
    allowed = site.get("allowed-rlocs") or []
    console.print(
        f"allowed RLOCs: {', '.join(allowed) if allowed else 'any'}; "
        f"proxy-reply: {cell(site.get('proxy-reply')) if site.get('proxy-reply') is not None else 'as registered'}; "
        f"force-merge: {cell(site.get('force-merge'))}"
    )
    if site.get("description"):
        console.print(f"description: {site['description']}")
    render_rows("Registrations", REGISTRATION_COLUMNS, data.get("registrations", []), empty="nothing registered")
    render_rows("Rejections", REJECTION_COLUMNS, data.get("rejections", []), empty="no rejections")


@show_app.command("registrations")
def show_registrations(
    iid: int | None = typer.Option(None, "--iid", help="Only this instance-id."),
    eid: str | None = typer.Option(None, "--eid", help="Only registrations inside this prefix / covering this EID."),
    site: str | None = typer.Option(None, "--site", help="Only this site."),
    api: str | None = ApiOption,
    as_json: bool = JsonOption,
) -> None:
    """Registered EID prefixes: RLOCs, registering ETRs, first/last registration, expiry."""
    try:
        data = api_get(api, "/registrations", {"iid": iid, "eid": eid, "site": site})
    except ApiError as e:
        raise fail(str(e)) from None
    if as_json:
        print_json(data)
        return
    render_rows("Registrations", REGISTRATION_COLUMNS, data, empty="nothing registered")


@show_app.command("rejections")
def show_rejections(api: str | None = ApiOption, as_json: bool = JsonOption) -> None:
    """Rejected Map-Registers per site and reason, with the last offender and time."""
    try:
        data = api_get(api, "/rejections")
    except ApiError as e:
        raise fail(str(e)) from None
    if as_json:
        print_json(data)
        return
    render_rows("Rejections", REJECTION_COLUMNS, data, empty="no rejections")


@show_app.command("static-mappings")
def show_static(api: str | None = ApiOption, as_json: bool = JsonOption) -> None:
    """Static mappings of the Map-Server."""
    try:
        data = api_get(api, "/static-mappings")
    except ApiError as e:
        raise fail(str(e)) from None
    if as_json:
        print_json(data)
        return
    render_rows("Static mappings", STATIC_COLUMNS, data)


def _flatten(prefix: str, data: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append({"counter": prefix, "value": data})


@show_app.command("stats")
def show_stats(api: str | None = ApiOption, as_json: bool = JsonOption) -> None:
    """Counters: messages in/out by type, registrations, rejections, errors."""
    try:
        data = api_get(api, "/stats")
    except ApiError as e:
        raise fail(str(e)) from None
    if as_json:
        print_json(data)
        return
    rows: list[dict[str, Any]] = []
    _flatten("", data.get("daemon", {}), rows)
    render_rows(f"Node {data.get('node', '?')}", [col("Counter", "counter"), col("Value", "value", "right")], rows)
    for role, stats in (data.get("roles") or {}).items():
        rows = []
        _flatten("", stats, rows)
        render_rows(f"Role {role}", [col("Counter", "counter"), col("Value", "value", "right")], rows)


add_show_command(
    "map-cache", "/map-cache", MAP_CACHE_COLUMNS,
    help="The ITR map-cache (xTR roles).", title="Map-cache", with_iid_eid=True,
)
add_show_command(
    "database-mapping", "/database-mapping", DATABASE_COLUMNS,
    help="The ETR's local EID prefixes (xTR roles).", title="Database mappings",
)


def register(app: typer.Typer) -> None:
    app.add_typer(show_app, name="show")


__all__ = [
    "ApiError",
    "Column",
    "add_show_command",
    "api_get",
    "api_url",
    "col",
    "render_rows",
    "show_app",
]
