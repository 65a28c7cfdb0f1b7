"""Thin ctypes bindings to the system ``libbpf.so.1`` (no BCC, no compiler at run time).

Only what the eBPF data plane needs: open/load an object file, find its programs and
maps, read and write map elements, attach tc clsact programs, and read a ring buffer.
Every failing call raises :class:`BpfError` carrying the errno.

Also here: :func:`netns`, which moves the calling thread into a named network
namespace for the duration of a block (tc attachment and interface indexes are
per-namespace; BPF programs and maps are not).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1

CLONE_NEWNET = 0x40000000

T = TypeVar("T")


class BpfError(OSError):
    """A libbpf call failed."""


class _TcHook(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class _TcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


_SampleFn = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)
_PrintFn = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
"""libbpf_print_fn_t: (level, format, va_list); va_list is passed on as an opaque pointer."""

_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_quiet = threading.local()
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2
blog = logging.getLogger("lispnet.libbpf")


def _print(level: int, fmt: bytes | None, args: int | None) -> int:
    """libbpf's messages go to the ``lispnet.libbpf`` logger instead of stderr: warnings
    (a verifier log, a kernel refusal) as warnings, except inside :func:`quiet`, where an
    expected refusal (probing for a filter that is not there) is only a debug line."""
    try:
        quiet = getattr(_quiet, "depth", 0) > 0
        pylevel = logging.WARNING if level == LIBBPF_WARN and not quiet else logging.DEBUG
        if level == LIBBPF_DEBUG or not blog.isEnabledFor(pylevel) or not fmt or _libc is None:
            return 0
        buf = ctypes.create_string_buffer(1024)
        _libc.vsnprintf(buf, len(buf), fmt, args)
        blog.log(pylevel, "%s", buf.value.decode(errors="replace").rstrip())
    except Exception:  # noqa: BLE001 - never unwind into C
        pass
    return 0


_print_cb = _PrintFn(_print)


@contextmanager
def quiet() -> Iterator[None]:
    """libbpf warnings inside the block are expected (e.g. no clsact qdisc yet): debug only."""
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1


def _load() -> ctypes.CDLL:
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__find_map_fd_by_name": (c_int, [c_void_p, c_char_p]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "libbpf_num_possible_cpus": (c_int, []),
        "bpf_tc_hook_create": (c_int, [c_void_p]),
        "bpf_tc_hook_destroy": (c_int, [c_void_p]),
        "bpf_tc_attach": (c_int, [c_void_p, c_void_p]),
        "bpf_tc_detach": (c_int, [c_void_p, c_void_p]),
        "bpf_tc_query": (c_int, [c_void_p, c_void_p]),
        "ring_buffer__new": (c_void_p, [c_int, _SampleFn, c_void_p, c_void_p]),
        "ring_buffer__free": (None, [c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__epoll_fd": (c_int, [c_void_p]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    global _libc
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _libc.vsnprintf.restype = c_int
        _libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        lib.libbpf_set_print.restype = c_void_p
        lib.libbpf_set_print.argtypes = [_PrintFn]
        lib.libbpf_set_print(_print_cb)
    except (OSError, AttributeError):  # keep libbpf's default printing to stderr
        _libc = None
    _lib = lib
    return lib


def available() -> bool:
    """True when libbpf can be loaded (it says nothing about privileges)."""
    try:
        _load()
    except (OSError, AttributeError):
        return False
    return True


def _check(rc: int, what: str) -> int:
    """libbpf 1.x returns -errno; older calls return -1 and set errno."""
    if rc < 0:
        err = -rc if rc != -1 else (ctypes.get_errno() or errno.EPERM)
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return rc


def num_possible_cpus() -> int:
    return _check(_load().libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


# --- objects, programs, maps --------------------------------------------------------------
class BpfMap:
    """A map by file descriptor; keys and values are raw bytes of the C layout."""

    def __init__(self, fd: int, name: str, key_size: int, value_size: int, per_cpu: bool = False) -> None:
        self.fd = fd
        self.name = name
        self.key_size = key_size
        self.value_size = value_size
        self.per_cpu = per_cpu

    def _value_len(self) -> int:
        if self.per_cpu:
            return ((self.value_size + 7) // 8) * 8 * num_possible_cpus()
        return self.value_size

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(key) != self.key_size or len(value) != self._value_len():
            raise ValueError(f"{self.name}: key/value size {len(key)}/{len(value)} mismatch")
        _check(_load().bpf_map_update_elem(self.fd, key, value, flags), f"update {self.name}")

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; False when it was not there."""
        rc = _load().bpf_map_delete_elem(self.fd, key)
        if rc < 0 and (-rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
            return False
        _check(rc, f"delete {self.name}")
        return True

    def lookup(self, key: bytes) -> bytes | None:
        buf = ctypes.create_string_buffer(self._value_len())
        rc = _load().bpf_map_lookup_elem(self.fd, key, buf)
        if rc < 0 and (-rc == errno.ENOENT or ctypes.get_errno() == errno.ENOENT):
            return None
        _check(rc, f"lookup {self.name}")
        return buf.raw

    def keys(self) -> list[bytes]:
        out: list[bytes] = []
        lib = _load()
        cur: bytes | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            rc = lib.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc < 0:
                break
            out.append(nxt.raw)
            cur = nxt.raw
        return out


class BpfObject:
    """A loaded BPF object file.  ``close()`` releases its programs and maps."""

    def __init__(self, path: str) -> None:
        lib = _load()
        ptr = lib.bpf_object__open_file(path.encode(), None)
        if not ptr:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(err, f"open {path}: {os.strerror(err)}")
        self._obj: int | None = ptr
        try:
            _check(lib.bpf_object__load(ptr), f"load {path}")
        except BpfError:
            self.close()
            raise

    def _ptr(self) -> int:
        if self._obj is None:
            raise BpfError(errno.EBADF, "object closed")
        return self._obj

    def program_fd(self, name: str) -> int:
        prog = _load().bpf_object__find_program_by_name(self._ptr(), name.encode())
        if not prog:
            raise BpfError(errno.ENOENT, f"no program {name}")
        return _check(_load().bpf_program__fd(prog), f"fd of {name}")

    def map_fd(self, name: str) -> int:
        return _check(_load().bpf_object__find_map_fd_by_name(self._ptr(), name.encode()), f"map {name}")

    def close(self) -> None:
        if self._obj is not None:
            _load().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- tc clsact ------------------------------------------------------------------------------
def _hook(ifindex: int, ingress: bool) -> _TcHook:
    return _TcHook(
        sz=ctypes.sizeof(_TcHook),
        ifindex=ifindex,
        attach_point=BPF_TC_INGRESS if ingress else BPF_TC_EGRESS,
        parent=0,
    )


def tc_hook_create(ifindex: int) -> bool:
    """Add the clsact qdisc on ``ifindex``; False when it already existed."""
    hook = _hook(ifindex, True)
    rc = _load().bpf_tc_hook_create(ctypes.byref(hook))
    if rc == -errno.EEXIST:
        return False
    _check(rc, f"clsact on ifindex {ifindex}")
    return True


def tc_hook_destroy(ifindex: int) -> None:
    """Remove the clsact qdisc (and every filter on it) from ``ifindex``."""
    hook = _TcHook(sz=ctypes.sizeof(_TcHook), ifindex=ifindex, attach_point=BPF_TC_INGRESS | BPF_TC_EGRESS)
    rc = _load().bpf_tc_hook_destroy(ctypes.byref(hook))
    if rc not in (0, -errno.ENOENT, -errno.EINVAL, -errno.ENODEV):
        _check(rc, f"destroy clsact on ifindex {ifindex}")


def tc_attach(ifindex: int, prog_fd: int, *, handle: int, priority: int, ingress: bool = True) -> int:
    """Attach a direct-action filter (replacing ours if present); returns the program id."""
    hook = _hook(ifindex, ingress)
    opts = _TcOpts(
        sz=ctypes.sizeof(_TcOpts), prog_fd=prog_fd, flags=BPF_TC_F_REPLACE, handle=handle, priority=priority
    )
    _check(_load().bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)), f"tc attach on ifindex {ifindex}")
    return int(opts.prog_id)


def tc_detach(ifindex: int, *, handle: int, priority: int, ingress: bool = True) -> bool:
    """Remove our filter; False when it was not there (or the interface is gone)."""
    hook = _hook(ifindex, ingress)
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
    rc = _load().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    if rc in (-errno.ENOENT, -errno.ENODEV, -errno.EINVAL):
        return False
    _check(rc, f"tc detach on ifindex {ifindex}")
    return True


def tc_query(ifindex: int, *, handle: int, priority: int, ingress: bool = True) -> int | None:
    """The program id attached as our filter, or None."""
    hook = _hook(ifindex, ingress)
    opts = _TcOpts(sz=ctypes.sizeof(_TcOpts), handle=handle, priority=priority)
    rc = _load().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
    if rc < 0:
        return None
    return int(opts.prog_id)


# --- ring buffer ----------------------------------------------------------------------------
class RingBuffer:
    """A BPF ring buffer; ``callback(bytes)`` runs for each record during poll/consume."""

    def __init__(self, map_fd: int, callback: Callable[[bytes], None]) -> None:
        self._callback = callback

        def sample(_ctx: int | None, data: int | None, size: int) -> int:
            if data:
                try:
                    callback(ctypes.string_at(data, size))
                except Exception:  # noqa: BLE001 - a callback bug must not unwind into C
                    return 0
            return 0

        self._sample = _SampleFn(sample)
        ptr = _load().ring_buffer__new(map_fd, self._sample, None, None)
        if not ptr:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(err, f"ring_buffer__new: {os.strerror(err)}")
        self._rb: int | None = ptr

    def poll(self, timeout_ms: int) -> int:
        if self._rb is None:
            return 0
        rc = _load().ring_buffer__poll(self._rb, timeout_ms)
        if rc == -errno.EINTR:
            return 0
        return _check(rc, "ring_buffer__poll")

    def consume(self) -> int:
        if self._rb is None:
            return 0
        return _check(_load().ring_buffer__consume(self._rb), "ring_buffer__consume")

    def epoll_fd(self) -> int:
        if self._rb is None:
            raise BpfError(errno.EBADF, "ring buffer freed")
        return _check(_load().ring_buffer__epoll_fd(self._rb), "ring_buffer__epoll_fd")

    def free(self) -> None:
        if self._rb is not None:
            _load().ring_buffer__free(self._rb)
            self._rb = None


# --- network namespaces ---------------------------------------------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def netns(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in network namespace ``name`` (None: stay)."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run_in_netns(name: str | None, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a fresh thread inside namespace ``name`` and return its result.

    pyroute2 0.9 drives netlink with asyncio internally, so its synchronous API cannot
    run on a thread whose event loop is already running (the daemon's); the kernel
    backends do their pyroute2 work through this.  The thread's own namespace switch
    leaves the caller's untouched.
    """
    from .netlink import in_thread

    def run() -> T:
        with netns(name):
            return fn(*args)

    return in_thread(run)
