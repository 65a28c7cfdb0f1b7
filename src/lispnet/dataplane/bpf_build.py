"""Compile the kernel fast paths: ``bpf/lisp.bpf.c`` -> ``bpf/lisp.bpf.o`` (data plane) and
``bpf/mapreq.bpf.c`` -> ``bpf/mapreq.bpf.o`` (Map-Request offload, ``shell/mapreq_offload.py``).

Run once at set-up time (``scripts/setup`` calls ``python -m lispnet.dataplane.bpf_build``);
a node then needs no compiler: :mod:`lispnet.dataplane.ebpf` loads the object with libbpf.
Only the kernel UAPI headers (linux-libc-dev) and libbpf's ``bpf_helpers.h`` are needed,
no kernel headers and no vmlinux.h.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent / "bpf"
SOURCE = BPF_DIR / "lisp.bpf.c"
OBJECT = BPF_DIR / "lisp.bpf.o"
MAPREQ_SOURCE = BPF_DIR / "mapreq.bpf.c"
MAPREQ_OBJECT = BPF_DIR / "mapreq.bpf.o"
SOURCES: tuple[tuple[Path, Path], ...] = ((SOURCE, OBJECT), (MAPREQ_SOURCE, MAPREQ_OBJECT))
"""Every (source, object) pair ``main`` builds."""


class BuildError(RuntimeError):
    """The BPF object could not be built (no compiler, or a compile error)."""


def _multiarch_include() -> list[str]:
    """``-I/usr/include/<triplet>`` so ``<asm/types.h>`` resolves under ``-target bpf``."""
    machine = platform.machine()
    triplets = {
        "x86_64": "x86_64-linux-gnu",
        "aarch64": "aarch64-linux-gnu",
        "armv7l": "arm-linux-gnueabihf",
        "ppc64le": "powerpc64le-linux-gnu",
        "s390x": "s390x-linux-gnu",
        "riscv64": "riscv64-linux-gnu",
    }
    triplet = triplets.get(machine)
    if triplet and Path(f"/usr/include/{triplet}").is_dir():
        return [f"-I/usr/include/{triplet}"]
    return []


def find_clang() -> str | None:
    """The clang binary to use (``$CLANG`` overrides), or None."""
    env = os.environ.get("CLANG")
    if env:
        return env
    for name in ("clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"):
        path = shutil.which(name)
        if path:
            return path
    return None


def is_stale(source: Path = SOURCE, obj: Path = OBJECT) -> bool:
    """True when the object is missing or older than its source."""
    return not obj.exists() or obj.stat().st_mtime < source.stat().st_mtime


def build(source: Path = SOURCE, obj: Path = OBJECT, *, force: bool = False) -> Path:
    """Compile ``source`` into ``obj`` (skipped when up to date unless ``force``)."""
    if not force and not is_stale(source, obj):
        return obj
    clang = find_clang()
    if clang is None:
        raise BuildError("clang not found: install clang, llvm and libbpf-dev (scripts/setup does)")
    tmp = obj.with_suffix(".o.tmp")
    cmd = [
        clang,
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-Wall",
        "-Wno-unused-function",
        *_multiarch_include(),
        "-c",
        str(source),
        "-o",
        str(tmp),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    os.replace(tmp, obj)
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lispnet.dataplane.bpf_build", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("-o", "--output", type=Path, default=OBJECT, help="object file to write for lisp.bpf.c")
    args = parser.parse_args(argv)
    status = 0
    for source, obj in SOURCES:
        try:
            out = build(source, args.output if source == SOURCE else obj, force=args.force)
        except BuildError as exc:
            print(f"bpf_build: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"bpf_build: {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
