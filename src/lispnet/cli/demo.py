"""``lispnet demo``: bring up the built-in lab and show LISP at work, check by check."""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

console = Console(emoji=False)


def _table(rows: list[tuple[str, str, str]]) -> Table:
    t = Table(title="lispnet demo")
    t.add_column("")
    t.add_column("check")
    t.add_column("detail")
    for mark, name, detail in rows:
        t.add_row(mark, name, detail)
    return t


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        topology: str = typer.Argument("demo", help="Topology (default: the built-in demo lab)."),
        keep: bool = typer.Option(False, "--keep", help="Leave the lab running afterwards."),
        dataplane: str = typer.Option(
            "tun", "--dataplane",
            help="tun | ebpf | vxlan-gpe | vxlan for every xTR, or per router: ebpf,xtr2=tun (a TUN xTR and "
                 "an eBPF xTR talking LISP).",
        ),  # fmt: skip
        name: str = typer.Option("demo", "--name", help="Lab name (namespaces are NAME-NODE)."),
    ) -> None:
        """Build a LISP network in namespaces: MS/MR, two xTR sites, a PxTR, hosts; ping across it."""
        from ..lab.checks import CheckResult, demo_checks
        from ..lab.lab import LabError, down, up
        from ..lab.topology import TopologyError, load_topology, parse_dataplanes
        from .lab import nodes_table

        rows: list[tuple[str, str, str]] = []
        failed: list[str] = []
        t0 = time.monotonic()
        try:
            default_dp, per_node = parse_dataplanes(dataplane)
            topo = load_topology(topology).with_name(name).with_dataplanes(per_node)
        except TopologyError as e:
            console.print(f"[red]{e}[/red]")
            raise typer.Exit(2) from None
        lab = None
        try:
            with Live(_table(rows), console=console, refresh_per_second=8) as live:

                def progress(msg: str) -> None:
                    rows.append(("…", msg, ""))
                    live.update(_table(rows))

                try:
                    lab = up(topo, default_dp, progress=progress)
                    rows.clear()
                    rows.append(("✔", "lab up, every ETR registered with the Map-Server",
                                 f"{len(lab.nodes)} nodes in {time.monotonic() - t0:.1f} s"))
                except (LabError, OSError) as e:
                    rows.append(("✘", "lab up", str(e).splitlines()[0]))
                    failed.append("lab up")
                    live.update(_table(rows))
                    console.print(str(e))
                    raise typer.Exit(1) from None
                live.update(_table(rows))
                for _key, thunk in demo_checks(lab):
                    rows.append(("…", "running", ""))
                    live.update(_table(rows))
                    try:
                        out = thunk()
                        results: list[CheckResult] = out if isinstance(out, list) else [out]
                    except Exception as e:  # noqa: BLE001 - a failed check, not a crash
                        results = [CheckResult(_key, False, f"error: {e}")]
                    rows.pop()
                    for res in results:
                        mark = "–" if res.not_applicable else ("✔" if res.ok else "✘")
                        rows.append((mark, res.name, res.detail))
                        if not res.ok and not res.not_applicable:
                            failed.append(res.name)
                    live.update(_table(rows))
            if lab is not None:
                console.print(nodes_table(lab))
        finally:
            if lab is not None and not keep:
                down(topo.name)
                console.print(f"lab {topo.name} removed")
            elif lab is not None:
                console.print(f"lab {topo.name} kept: `lispnet lab exec {topo.name} h1 -- ping 10.2.0.10`, "
                              f"`lispnet lab down {topo.name}`")
        if failed:
            console.print(f"[red]{len(failed)} check(s) failed:[/red] " + "; ".join(failed))
            raise typer.Exit(1)
        console.print("[green]every check passed[/green]")
