"""Datagram-exact UDP between two hosts of a lab, as two ``python -c`` scripts.

``UDP_SINK ADDR`` binds ADDR port 7001 (IPv4 or IPv6), prints "ready", receives until
1 s of silence (10 s before the first datagram), then prints JSON: datagrams that
arrived intact (``ok``), with a wrong size or content (``bad``), twice (``dup``).
``UDP_SOURCE ADDR`` sends bursts of numbered, self-checking datagrams there - runs of
equal sizes, some ending in a shorter one, some bigger - and prints how many: where GRO
merges runs into super-packets, every datagram boundary must survive.
"""

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
