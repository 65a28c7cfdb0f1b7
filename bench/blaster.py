"""The 64-byte-frame sender shared by the data-plane benchmarks.

``BLAST`` is a script run with ``python -c BLAST DST SPORT SECONDS PAYLOAD_LEN`` inside
the sending host's namespace: one connected UDP socket (its own source port, so flows
spread like real traffic) sending PAYLOAD_LEN-byte datagrams to DST port 9 as fast as
``send`` goes for SECONDS; it prints how many it sent.  iperf3 as a 64-byte sender
tops out near 60 kpps here (one thread behind a pacing timer), which would measure
iperf3 rather than forwarding; the benchmarks run one of these per CPU instead.
"""

BLAST = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
sock.bind(("0.0.0.0", int(sys.argv[2])))
sock.connect((sys.argv[1], 9))
payload = bytes(int(sys.argv[4]))
send = sock.send
end = time.monotonic() + float(sys.argv[3])
n = 0
while True:
    for _ in range(1000):
        try:
            send(payload)
        except OSError:
            pass
    n += 1000
    if time.monotonic() >= end:
        break
print(n)
"""

SINK = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 9))
print("ready", flush=True)
sys.stdin.read()
"""
"""The receiver: a socket on port 9 of the address in argv[1] that is never read (datagrams
are counted, then dropped at its full buffer, as cheaply as a traffic sink; without it each
one would cost an ICMP port-unreachable); it prints "ready" and lives until stdin closes."""

PAYLOAD_64B_FRAME = 18
"""UDP payload of a 64-byte Ethernet frame (14 + 20 + 8 + 18 + 4 FCS)."""
