"""The one ``lispnet`` command.  Each sub-command lives in its own module with a
``register(app)`` function; this file only assembles them."""

from __future__ import annotations

import importlib

import typer

from .. import __version__

app = typer.Typer(
    name="lispnet",
    help="lispnet: a LISP (RFC 9300/9301) network - every role, control and data plane.",
    no_args_is_help=True,
    add_completion=False,
)

# sub-command modules; each defines register(app: typer.Typer) -> None
_MODULES = ["decode", "run", "show", "lig", "lab", "demo"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lispnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """lispnet command line."""


for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"lispnet.cli.{_name}")
    except ModuleNotFoundError as e:  # a sub-command module not written yet
        if e.name != f"lispnet.cli.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
