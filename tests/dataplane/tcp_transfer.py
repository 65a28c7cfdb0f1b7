"""A byte-exact TCP transfer between two hosts of a lab, as two ``python -c`` scripts.

``SINK ADDR`` listens on ADDR port 7000, prints "ready", then the byte count and SHA-256 of
what it received; ``SOURCE ADDR N`` sends N random bytes there and prints the same of what
it sent.
"""

SINK = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = """
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[2]))
c = socket.create_connection((sys.argv[1], 7000)); c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""
