#!/usr/bin/env python3
"""RSS of the release server through connection floods (issue 21 item 7).

    scripts/flood_rss.py [BINARY] [--connections N] [--cycles C]

Starts BINARY (default target/release/starpunk) on a free port with the
monitor on, warms it up, then runs C cycles of: N connections from many
loopback addresses (50 a client, under the per-client cap), each sending
one `GET /` on a kept-alive connection and reading the answer (so the
server holds a connection's buffers), then N more that connect and stay
idle; RSS read with all open; all closed; RSS read again after --settle seconds (20).
Prints one line a cycle and the memory per open connection.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def client(port, i):
    """Connection `i`, from the address of client i / 50."""
    s = socket.socket()
    a = i // 50
    s.bind((f"127.{20 + a // 250}.{a % 250}.1", 0))
    s.connect(("127.0.0.1", port))
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="target/release/starpunk")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=6)
    ap.add_argument("--settle", type=float, default=20.0,
                    help="seconds to wait after closing before reading RSS")
    args = ap.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="flood-rss-")
    env = dict(os.environ)
    env.update({
        "STARPUNK_BIND": f"127.0.0.1:{port}",
        "STARPUNK_DATA_DIR": data,
        "STARPUNK_ADMIN_PASSWORD": "flood-rss-password-1",
        "STARPUNK_MICROPUB_TOKEN": "flood-rss-token-0123456789",
        "STARPUNK_PERF_MONITORING_ENABLED": "true",
        "STARPUNK_ACCESS_LOG": "false",
        "STARPUNK_HTTP_HEADER_TIMEOUT": "120",
    })
    proc = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/health", timeout=1).read()
                break
            except Exception:
                time.sleep(0.05)
        for _ in range(500):
            urllib.request.urlopen(base + "/", timeout=5).read()
        time.sleep(1)
        start = rss_kib(proc.pid)
        print(f"start: RSS {start / 1024:.1f} MiB ({args.binary})")
        n = args.connections
        for cycle in range(args.cycles):
            socks = []
            for i in range(n):
                s = client(port, i)
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                socks.append(s)
            for s in socks:
                s.settimeout(10)
                got = b""
                while b"</html>" not in got:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            for i in range(n):
                socks.append(client(port, n + i))
            time.sleep(0.5)
            held = rss_kib(proc.pid)
            for s in socks:
                s.close()
            time.sleep(args.settle)
            after = rss_kib(proc.pid)
            print(f"cycle {cycle + 1}: {n} served + {n} idle open: RSS {held / 1024:.1f} MiB; "
                  f"all closed: {after / 1024:.1f} MiB "
                  f"(+{(after - start) / 1024:.1f} over start); "
                  f"{(held - after) / (2 * n):.1f} KiB a connection")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
