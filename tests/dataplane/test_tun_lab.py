"""The TUN data plane under load in the demo lab (root only): the batched paths
(UDP_SEGMENT sends, UDP_GRO receives, GSO writes to the TUN) keep TCP byte-exact, and
the per-RLOC counters add up packet for packet."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from lispnet.lab import checks
from lispnet.lab.lab import Lab, down, ns_popen, up
from lispnet.lab.topology import load_topology

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

LAB = f"lnt-tun{os.getpid() % 10000}"

SINK = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.2.0.10", 7000)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[1]))
c = socket.create_connection(("10.2.0.10", 7000)); c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""

UDP_SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("10.2.0.10", 7001)); s.settimeout(3); print("ready", flush=True)
n = 0
try:
    while True:
        s.recv(2048); n += 1
except socket.timeout:
    pass
print(n, flush=True)
"""

UDP_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(i.to_bytes(4, "big") * 16, ("10.2.0.10", 7001))
"""


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    topo = load_topology("demo").with_name(LAB)
    request.addfinalizer(lambda: down(LAB))
    lab = up(topo, "tun", timeout=90)
    assert checks.ping(lab, "h1", "10.2.0.10", count=2)[1] >= 1
    yield lab


def test_tcp_transfer_is_byte_exact(lab: Lab) -> None:
    import subprocess

    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        src = lab.exec("h1", [sys.executable, "-c", SOURCE, str(30 * 1024 * 1024)], timeout=120)
        out, _ = sink.communicate(timeout=60)
    finally:
        if sink.poll() is None:
            sink.kill()
    assert src.stdout.split() == out.split()
    fwd = checks.forwarding(lab, "xtr2")
    assert fwd.get("gso.coalesced-writes", 0) > 0  # the receive side merged GRO batches


def test_counters_add_up_under_a_burst(lab: Lab) -> None:
    import subprocess

    before1, before2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")
    sink = ns_popen(lab.namespace("h2"), [sys.executable, "-c", UDP_SINK], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        lab.exec("h1", [sys.executable, "-c", UDP_SOURCE, "20000"], timeout=60)
        received = int(sink.communicate(timeout=30)[0].split()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
    time.sleep(0.2)
    after1, after2 = checks.forwarding(lab, "xtr1"), checks.forwarding(lab, "xtr2")

    def delta(a: dict[str, int], b: dict[str, int], k: str) -> int:
        return b.get(k, 0) - a.get(k, 0)

    encap = delta(before1, after1, "encap.packets.fd00:255::12")  # h1 -> h2 crosses over IPv6
    decap = delta(before2, after2, "decap.packets.fd00:255::11")
    assert received > 0
    # every packet the ITR counted reached the ETR, and every one the ETR counted reached h2
    assert encap == decap == received, (encap, decap, received)
    assert delta(before1, after1, "encap.bytes.fd00:255::12") == received * (20 + 8 + 64)
    sends = delta(before1, after1, "gso.udp-sends")
    assert 0 < sends <= encap  # batches: never more sendmsg calls than packets
