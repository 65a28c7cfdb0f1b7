"""``lispnet lab``: build a LISP network of namespaces from a topology file.

    lispnet lab up TOPOLOGY.toml [--name LAB] [--dataplane tun]
    lispnet lab exec LAB NODE -- CMD ...
    lispnet lab down LAB
    lispnet lab list
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

lab_app = typer.Typer(help="Namespace labs: a whole LISP network on one machine.", no_args_is_help=True)
console = Console(emoji=False)


def nodes_table(lab: object) -> Table:
    from ..lab.lab import Lab

    assert isinstance(lab, Lab)
    table = Table(title=f"lab {lab.name}")
    for col in ("node", "kind", "namespace", "addresses", "API"):
        table.add_column(col)
    for info in lab.nodes.values():
        table.add_row(info.name, info.kind, info.namespace, ", ".join(info.addresses), info.api or "-")
    return table


@lab_app.command("up")
def lab_up(
    topology: str = typer.Argument(..., help="Topology file, or the name of a built-in one (demo)."),
    name: str | None = typer.Option(None, "--name", help="Lab name (default: the topology's)."),
    dataplane: str = typer.Option("tun", "--dataplane", help="tun | ebpf | vxlan-gpe | vxlan"),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for every ETR to register."),
) -> None:
    """Build the lab, start one `lispnet run` per router, wait until every ETR is registered."""
    from ..lab.lab import LabError, up
    from ..lab.topology import TopologyError, load_topology

    try:
        topo = load_topology(topology)
        if name:
            topo = topo.with_name(name)
        with console.status(f"bringing lab {topo.name} up") as status:
            lab = up(topo, dataplane, progress=lambda m: status.update(m), timeout=timeout)
    except (LabError, TopologyError) as e:
        console.print(f"[red]lab up failed:[/red] {e}")
        raise typer.Exit(1) from None
    console.print(nodes_table(lab))
    console.print(f"lab {lab.name} is up; `lispnet lab exec {lab.name} NODE -- CMD`, `lispnet lab down {lab.name}`")


@lab_app.command("down")
def lab_down(name: str = typer.Argument(..., help="Lab name.")) -> None:
    """Stop the lab's daemons and remove its namespaces (also after a crash)."""
    from ..lab.lab import down

    removed = down(name, progress=lambda m: console.print(m))
    if not removed:
        console.print(f"no namespaces of lab {name!r} were left")


@lab_app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_exec(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lab name."),
    node: str = typer.Argument(..., help="Node name."),
) -> None:
    """Run a command inside a node's namespace: `lispnet lab exec LAB NODE -- CMD ...`."""
    from ..lab.lab import ns_popen

    argv = [a for a in ctx.args if a != "--"] if ctx.args and ctx.args[0] == "--" else list(ctx.args)
    if not argv:
        argv = [os.environ.get("SHELL", "/bin/sh")]
    ns = f"{name}-{node}"
    if not os.path.exists(f"/run/netns/{ns}"):
        console.print(f"[red]no node {node!r} in lab {name!r}[/red]")
        raise typer.Exit(2)
    try:
        proc = ns_popen(ns, argv, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    except OSError as e:
        console.print(f"[red]{argv[0]}: {e.strerror}[/red]")
        raise typer.Exit(127) from None
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        rc = proc.wait()
    raise typer.Exit(rc)


@lab_app.command("list")
def lab_list() -> None:
    """Labs with namespaces on this machine."""
    from ..lab.lab import load_lab_state, running_labs

    for lab in running_labs():
        state = load_lab_state(lab) or {}
        console.print(f"{lab}: {len(state.get('nodes', {}))} nodes")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")


__all__ = ["register", "nodes_table"]
