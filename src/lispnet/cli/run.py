"""``lispnet run NODE.toml``: validate the node file and run the daemon in the foreground.

``lispnet run --check NODE.toml`` only validates (exit 0 / 2), like ``gobgpd -d``.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Path = typer.Argument(..., help="Node configuration file (TOML)."),
        check: bool = typer.Option(False, "--check", help="Only validate the configuration and exit."),
        log_level: str | None = typer.Option(
            None, "--log-level", help="Override [node] log-level (debug, info, warning, error)."
        ),
    ) -> None:
        """Run a LISP node (Map-Server, Map-Resolver, xTR...) from a TOML file."""
        from ..config.load import ConfigError, load_config

        if check:
            try:
                cfg = load_config(config)
            except ConfigError as e:
                typer.echo(e.render())
                raise typer.Exit(2) from None
            typer.echo(f"{config}: OK (node {cfg.node.name}, roles: {', '.join(cfg.node.roles)})")
            return
        from ..shell.daemon import run_node

        raise typer.Exit(run_node(config, log_level))
