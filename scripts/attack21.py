#!/usr/bin/env python3
"""Issue 21's attacks against a starpunk binary, on loopback only:

    python3 scripts/attack21.py BINARY [--connections N]

1. Unread pages: a blog of 60 long notes (42 KB each); N connections
   (default 300, 50 a client address) pipeline 20 requests each for
   `/search?q=common` (50 results), then for `/` (20 notes), and never
   read. The highest RSS until the server settles, and `/health` from a
   fresh address.
2. One address holds 4,150 connections (past the default cap of 4,096); `/health` from another address.
3. 17 kept-alive connections send a request each while SIGTERM is on its
   way: how many are closed unanswered.

Prints one line an attack. Compare two builds by running it on each.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

TOKEN = "attack21-token-0123456789abcdef"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect(port, src="127.0.0.1", rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def health(port, src="127.0.0.9"):
    t = time.time()
    try:
        s = connect(port, src)
        s.settimeout(10)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status = s.recv(64)[9:12].decode(errors="replace") or "closed"
        s.close()
    except OSError as e:
        status = e.__class__.__name__
    return status, (time.time() - t) * 1000


def healths(port, n=5):
    out = [health(port) for _ in range(n)]
    ms = sorted(o[1] for o in out)
    return f"/health from another address: {[o[0] for o in out]}, median {ms[len(ms) // 2]:.1f} ms"


class Server:
    def __init__(self, binary, extra=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="attack21-")
        env = dict(os.environ)
        env.update({
            "STARPUNK_BIND": f"127.0.0.1:{self.port}",
            "STARPUNK_DATA_DIR": self.dir,
            "STARPUNK_ADMIN_PASSWORD": "attack21-password",
            "STARPUNK_MICROPUB_TOKEN": TOKEN,
            "STARPUNK_ACCESS_LOG": "false",
            "STARPUNK_PERF_MONITORING_ENABLED": "true",
            "STARPUNK_HTTP_HEADER_TIMEOUT": "120",
        })
        env.update(extra or {})
        self.proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            if health(self.port, "127.0.0.1")[0] == "200":
                return
            time.sleep(0.05)
        raise SystemExit("the server did not come up")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def unread_pages(binary, n, path):
    srv = Server(binary)
    words = " ".join(f"word{i % 97} common" for i in range(3000))
    for i in range(60):
        body = urllib.parse.urlencode({"h": "entry", "content": f"note {i} {words}"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/micropub", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        urllib.request.urlopen(req).read()
    page = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}").read()
    before = rss_mib(srv.proc.pid)
    pipelined = f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() * 20
    held = []
    for i in range(n):
        s = connect(srv.port, f"127.40.{i // 50}.1", rcvbuf=4096)
        s.setblocking(False)
        try:
            s.sendall(pipelined)
        except OSError:
            pass
        held.append(s)
    peak = before
    last = -1.0
    for _ in range(60):
        time.sleep(1)
        now = rss_mib(srv.proc.pid)
        peak = max(peak, now)
        if abs(now - last) < 0.5:
            break
        last = now
    print(f"unread pages: {n} connections x 20 pipelined {path} ({len(page) / 1e6:.2f} MB a page): "
          f"RSS {before:.1f} -> {peak:.1f} MiB; {healths(srv.port)}")
    for s in held:
        s.close()
    srv.stop()


def one_client(binary):
    srv = Server(binary)
    held = []
    for _ in range(4150):
        try:
            held.append(connect(srv.port, "127.41.0.1"))
        except OSError:
            break
    time.sleep(1)
    print(f"one address holding {len(held)} connections: {healths(srv.port, 9)}")
    for s in held:
        s.close()
    srv.stop()


def sigterm(binary, rounds=3):
    lost = []
    for _ in range(rounds):
        srv = Server(binary)
        conns = []
        for _ in range(17):
            s = connect(srv.port)
            s.settimeout(5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            s.recv(4096)
            conns.append(s)
        kill = subprocess.Popen(["kill", "-TERM", str(srv.proc.pid)])
        for s in conns:
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            except OSError:
                pass
            time.sleep(0.001)
        kill.wait()
        n = 0
        for s in conns:
            try:
                got = s.recv(4096)
            except OSError:
                got = b""
            if not got.startswith(b"HTTP/1.1 200"):
                n += 1
        lost.append(n)
        srv.proc.wait()
        shutil.rmtree(srv.dir, ignore_errors=True)
    print(f"SIGTERM with a request on each of 17 kept-alive connections: unanswered {lost} (of 17 a round)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=300)
    args = ap.parse_args()
    print(args.binary)
    unread_pages(args.binary, args.connections, "/search?q=common")
    unread_pages(args.binary, args.connections, "/")
    one_client(args.binary)
    sigterm(args.binary)


if __name__ == "__main__":
    sys.exit(main())
