#!/usr/bin/env python3
# A few of issue 9's attacks against a starpunk binary, on loopback only:
#   python3 scripts/attack.py BINARY PORT
# Used to compare the tiny_http front (commit 5647676) with the hyper front.
import socket, subprocess, sys, time, os, tempfile, shutil
binary, port = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
env = dict(os.environ, STARPUNK_BIND=f"127.0.0.1:{port}", STARPUNK_DATA_DIR=d,
           STARPUNK_ADMIN_PASSWORD="attack-password", STARPUNK_MICROPUB_TOKEN="attack-token-0123456789",
           STARPUNK_ACCESS_LOG="false")
p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def conn():
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(5); return s
def health():
    t = time.time()
    try:
        s = conn(); s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = s.recv(100)
        return f"{data[:12].decode(errors='replace')!r} in {1000*(time.time()-t):.1f} ms"
    except Exception as e:
        return f"no answer after {time.time()-t:.1f} s ({e.__class__.__name__})"
for _ in range(100):
    try:
        conn().close(); break
    except OSError: time.sleep(0.1)
print("baseline /health:", health())
slow = []
for _ in range(8):
    s = conn(); s.sendall(b"POST /micropub HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n0123456789"); slow.append(s)
time.sleep(0.5)
print("8 slow bodies, /health:", health())
for s in slow: s.close()
time.sleep(0.5)
s = conn(); s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a"*20480 + b"\r\n\r\n")
try: print("20 KiB header:", repr(s.recv(40)[:20]))
except Exception as e: print("20 KiB header: no answer", e.__class__.__name__)
for raw, what in [(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", "HTTP/2.0 request line"), (b"POST /micropub HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxxxx", "Transfer-Encoding: gzip")]:
    s = conn(); s.sendall(raw)
    try: print(what + ":", repr(s.recv(40)[:20]))
    except Exception as e: print(what + ": no answer after 5 s", e.__class__.__name__)
t = time.time(); p.terminate(); p.wait(); print(f"SIGTERM: exit {p.returncode} after {1000*(time.time()-t):.0f} ms")
shutil.rmtree(d)
