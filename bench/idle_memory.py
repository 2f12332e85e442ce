#!/usr/bin/python3
"""Server memory per idle WebSocket connection.

Usage: /usr/bin/python3 bench/idle_memory.py path/to/ws6455 [N] [serve options...]

Starts `ws6455 serve` (echo, 127.0.0.1, port 0), warms it up (WARMUP
connections, default 300, opened and closed: the code paths, OpenSSL's tables and
the io_uring receive buffers are touched once, as in any server that has served),
reads its RSS, opens N WebSocket connections (default 10,000: raw sockets, one
upgrade each, then silence), waits until the server has settled, reads its RSS
again and prints (RSS with N - RSS with none) / N. Kernel socket buffers are not
in RSS: this is what the process itself keeps per connection.

Connections are opened in batches of BATCH (default 500); PACE (seconds, default
0) waits that long after each batch: connections that arrive over time rather
than in one burst (what a server gave back meanwhile serves the next ones).
"""
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time

BIN = os.path.abspath(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
BATCH = int(os.environ.get("BATCH", "500"))
WARMUP = int(os.environ.get("WARMUP", "300"))
PACE = float(os.environ.get("PACE", "0"))
ARGS = sys.argv[3:]

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = N + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    # The server inherits the raised limit; no idle or ping timers fire during the run.
    srv = subprocess.Popen([BIN, "serve", "--port", "0", "--idle-timeout", "0", "--ping-interval", "0", *ARGS],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = srv.stdout.readline()
        m = re.match(rb"listening on ws://127\.0\.0\.1:(\d+)/", line)
        if not m:
            sys.exit(f"server did not start: {line!r}")
        port = int(m.group(1))
        backend = srv.stderr.readline().decode().strip()
        warm = []
        for _ in range(WARMUP):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(REQUEST)
            s.recv(4096)
            warm.append(s)
        for s in warm:
            s.close()
        time.sleep(0.5)
        before = rss_kib(srv.pid)
        socks = []
        deadline = time.monotonic() + 120
        for _ in range(N):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(REQUEST)
            socks.append(s)
            if len(socks) % BATCH == 0:  # read the 101s in batches: the backlog stays short
                time.sleep(PACE)
                for t in socks[-BATCH:]:
                    t.recv(4096)
            if time.monotonic() > deadline:
                sys.exit("too slow")
        for t in socks[len(socks) - len(socks) % BATCH:]:
            t.recv(4096)
        time.sleep(1.0)  # let the server trim per-connection state after the handshakes
        after = rss_kib(srv.pid)
        per = (after - before) * 1024 / N
        print(f"{backend}: RSS {before} KiB idle, {after} KiB with {N} connections: {per:.0f} B per connection")
        for s in socks:
            s.close()
    finally:
        srv.kill()
        srv.wait()


main()
