"""Read a node file (TOML) into a :class:`NodeConfig`, or explain precisely what is wrong.

Every problem is reported as ``dotted.key[index].path: reason`` with the kebab-case keys
the operator wrote, e.g.::

    site[0].authentication-keys[0].algorithm: must be one of hmac-sha-1, hmac-sha-256
    node.contrl-port: unknown key (did you mean control-port?)

All problems are collected at once (pydantic validates the whole tree), so a file is
fixed in one round.  Nothing starts before the file validates.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .model import NodeConfig

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A node file that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: invalid configuration" if self.source else "invalid configuration"
        return head + "\n" + "\n".join(f"  {p}" for p in self.problems)


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node file.  Raises :class:`ConfigError` (never anything else
    for bad content; OSError only when the file cannot be read is turned into one too)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror or e}"]) from None
    return parse_config(text, str(p))


def parse_config(text: str | Mapping[str, Any], source: str = "") -> NodeConfig:
    """Validate TOML text (or an already-parsed mapping) into a :class:`NodeConfig`."""
    if isinstance(text, str):
        try:
            data: Mapping[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(source, [f"TOML syntax: {e}"]) from None
    else:
        data = text
    return validate_model(NodeConfig, data, source)


def validate_model(model: type[M], data: Any, source: str = "") -> M:
    """``model.model_validate(data)`` with errors turned into a :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, format_errors(e, model)) from None


# --- error formatting ----------------------------------------------------------------


def format_errors(err: ValidationError, model: type[BaseModel]) -> list[str]:
    """One ``path: reason`` line per pydantic error, keys as written in the file."""
    out: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(e.get("loc", ()))
        path = format_path(loc)
        reason = _reason(e, model, loc)
        line = f"{path}: {reason}" if path else reason
        if line not in out:
            out.append(line)
    return out


def format_path(loc: Sequence[int | str]) -> str:
    parts = ""
    for item in loc:
        if isinstance(item, int):
            parts += f"[{item}]"
        else:
            parts += ("." if parts else "") + str(item)
    return parts


def _reason(e: Any, root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    kind: str = e.get("type", "")
    ctx: dict[str, Any] = e.get("ctx") or {}
    msg: str = e.get("msg", "")
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip().strip("'\"") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
        return "must be one of " + ", ".join(choices)
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        key = str(loc[-1]) if loc else ""
        if parent is not None:
            known = [f.alias or n for n, f in parent.model_fields.items()]
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if near:
                return f"unknown key (did you mean {near[0]}?)"
            return "unknown key (known: " + ", ".join(known) + ")"
        return "unknown key"
    if kind == "missing":
        return "required key missing"
    if kind in ("value_error", "assertion_error"):
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                return msg[len(prefix) :]
        return msg
    if kind in ("tuple_type", "list_type"):
        return "must be a list"
    if kind == "model_type" or kind == "dict_type":
        return "must be a table"
    if kind in ("too_short", "too_long"):
        if "min_length" in ctx and kind == "too_short":
            return f"must have at least {ctx['min_length']} item(s)"
        if "max_length" in ctx:
            return f"must have at most {ctx['max_length']} item(s)"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} character(s) long"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}"
    comparisons = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in comparisons:
        op, k = comparisons[kind]
        return f"must be {op} {ctx.get(k)}"
    if msg.startswith("Input should be"):
        return "must be" + msg[len("Input should be") :]
    return msg


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that the (alias) path ``loc`` points into, if any."""
    current: Any = root
    for item in loc:
        if isinstance(item, int):
            continue
        model = _as_model(current)
        if model is None:
            return None
        field = None
        for name, f in model.model_fields.items():
            if item in (name, f.alias):
                field = f
                break
        if field is None:
            return None
        current = field.annotation
    return _as_model(current)


def _as_model(tp: Any) -> type[BaseModel] | None:
    """Find the BaseModel inside ``X``, ``X | None``, ``tuple[X, ...]``, ``Annotated[X, ...]``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin is None:
        return None
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _as_model(args[0])
    if origin in (tuple, list, typing.Union, types.UnionType):
        for a in args:
            m = _as_model(a)
            if m is not None:
                return m
    return None


__all__ = ["ConfigError", "format_errors", "format_path", "load_config", "parse_config", "validate_model"]
