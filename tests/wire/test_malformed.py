"""Replay the malformed-packet corpus: each file must raise exactly the DecodeError
subclass its manifest entry names (tests/wire/corpus/manifest.json).

A corpus file is hex with '#' comment lines (what is wrong, and the expected error).
Every decoder bug found adds a file here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lispnet.wire.errors as errors
from lispnet.wire import parse_control

CORPUS = Path(__file__).parent / "corpus"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "manifest.json").read_text())


def load(name: str) -> bytes:
    lines = [ln.split("#", 1)[0].strip() for ln in (CORPUS / name).read_text().splitlines()]
    return bytes.fromhex("".join(lines))


def test_manifest_covers_corpus() -> None:
    files = {p.name for p in CORPUS.glob("*.hex")}
    assert files == set(MANIFEST)
    assert len(files) >= 25


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_malformed(name: str) -> None:
    expected = getattr(errors, MANIFEST[name]["error"])
    assert issubclass(expected, errors.DecodeError)
    with pytest.raises(errors.DecodeError) as info:
        parse_control(load(name))
    assert type(info.value) is expected, f"{name}: got {info.value!r}"
    assert info.value.offset is not None
    assert info.value.reason == expected.reason
