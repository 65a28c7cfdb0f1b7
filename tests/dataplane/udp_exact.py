"""Datagram-exact UDP between two hosts of a lab, as two ``python -c`` scripts.

``UDP_SINK ADDR`` binds ADDR port 7001 (IPv4 or IPv6), prints "ready", receives until
1 s of silence (10 s before the first datagram), then prints JSON: datagrams that
arrived intact (``ok``), with a wrong size or content (``bad``), twice (``dup``).
``UDP_SOURCE ADDR`` sends bursts of numbered, self-checking datagrams there - runs of
equal sizes, some ending in a shorter one, some bigger - and prints how many: where GRO
merges runs into super-packets, every datagram boundary must survive.

``MARKED_SEND SRC TTL TOS DST HEX...`` sends each hex payload from SRC to DST port 4341 with
that outer TTL and ToS (hand-made LISP packets); ``MARKED_RECV`` binds 10.2.0.2 port 7002,
prints "ready", then JSON: each datagram's text with the TTL and ToS it arrived with.
:func:`with_receiver` runs a receiver script around a sender.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def with_receiver(start: Callable[[], subprocess.Popen[str]], send: Callable[[], T],
                  timeout: float = 60) -> tuple[T, str]:
    """Start a receiver (it prints "ready" first), run ``send``, collect the receiver's output."""
    recv = start()
    try:
        assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
        result = send()
        out, _ = recv.communicate(timeout=timeout)
    finally:
        if recv.poll() is None:
            recv.kill()
    return result, out


UDP_SINK = """
import hashlib, json, socket, struct, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], 7001)); print("ready", flush=True)
s.settimeout(10.0)
seen, bad, dup = set(), 0, 0
while True:
    try:
        d = s.recv(4096)
    except socket.timeout:
        break
    s.settimeout(1.0)
    i, size = struct.unpack_from("!II", d) if len(d) >= 8 else (0, -1)
    want = (hashlib.sha256(d[:8]).digest() * 40)[: max(size - 8, 0)]
    if size != len(d) or d[8:] != want:
        bad += 1
    elif i in seen:
        dup += 1
    else:
        seen.add(i)
print(json.dumps({"ok": len(seen), "bad": bad, "dup": dup}), flush=True)
"""

UDP_SOURCE = """
import hashlib, socket, struct, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.connect((sys.argv[1], 7001))
n = 0
for burst in range(600):
    sizes = [40] * 30 + ([21] if burst % 3 == 0 else []) + ([900] * 8 if burst % 5 == 0 else [])
    for size in sizes:
        head = struct.pack("!II", n, size)
        s.send(head + (hashlib.sha256(head).digest() * 40)[: size - 8])
        n += 1
    if burst % 50 == 49:
        time.sleep(0.01)
print(n, flush=True)
"""

MARKED_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[2]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[3]))
s.bind((sys.argv[1], 0))
for hexpkt in sys.argv[5:]:
    s.sendto(bytes.fromhex(hexpkt), (sys.argv[4], 4341))
"""

MARKED_RECV = """
import json, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 12, 1); s.setsockopt(socket.IPPROTO_IP, 13, 1)  # IP_RECVTTL, IP_RECVTOS
s.bind(("10.2.0.2", 7002)); s.settimeout(5); print("ready", flush=True)
out = []
try:
    while True:
        d, anc, _f, _a = s.recvmsg(2048, 256)
        info = {"data": d.decode()}
        for lvl, kind, val in anc:
            info["ttl" if kind == socket.IP_TTL else "tos"] = val[0]
        out.append(info)
except socket.timeout:
    pass
print(json.dumps(out), flush=True)
"""
