#!/usr/bin/python3
"""`ws6455 load` (the echo load generator) against `ws6455 serve` and small Python servers.

Usage: /usr/bin/python3 tests/test_load_tool.py path/to/ws6455

Usage errors exit 2; a server that is down, or that refuses the upgrade, gives one
line on stderr and exit 1; short runs against `ws6455 serve` (both backends, sizes,
text and binary, deflate, --json, -n, --threads) are clean; a Python websockets
server that corrupts one echo in ten makes it report errors. Everything runs on
127.0.0.1 with ports the kernel picks; every wait is bounded; servers are killed at
the end. Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import serving
from checks import check, run_check, summary
from serving import free_port

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/ws6455"
FIELDS = ["msgs_per_s", "MiB_per_s", "p50_us", "p99_us", "p999_us", "max_us", "errors", "connections",
          "connect_failures", "cpu_us_per_msg", "msgs", "seconds", "ktls_connections"]


class Server(serving.Server):
    """`ws6455 serve --port 0 ARGS`; `url` with the slash (what load is given)."""

    def __init__(self, *args):
        super().__init__(BIN, *args)
        self.url += "/"


def load(*args, timeout=60):
    """Runs `ws6455 load ARGS`: (exit code, stdout, stderr)."""
    p = subprocess.run([BIN, "load", *args], capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def parse_line(out):
    """The result line as a dict of floats (None when it is not there exactly once)."""
    lines = out.splitlines()
    if len(lines) != 1:
        return None
    fields = dict(kv.split("=", 1) for kv in lines[0].split())
    if list(fields) != FIELDS:
        return None
    return {k: float(v) for k, v in fields.items()}


# ------------------------------------------------------------------ usage and failures

def test_usage():
    for args, what in [([], "no URL"),
                       (["ws://127.0.0.1:1/", "-t", "1", "-n", "5"], "-t with -n"),
                       (["ws://127.0.0.1:1/", "-s", "5", "--sizes", "1,2"], "-s with --sizes"),
                       (["ws://127.0.0.1:1/", "--text", "--binary"], "--text with --binary"),
                       (["ws://127.0.0.1:1/", "-c", "0"], "-c 0"),
                       (["ws://127.0.0.1:1/", "-c", "x"], "-c x"),
                       (["ws://127.0.0.1:1/", "-p", "0"], "-p 0"),
                       (["ws://127.0.0.1:1/", "-t", "0"], "-t 0"),
                       (["ws://127.0.0.1:1/", "-t", "-1"], "-t -1"),
                       (["ws://127.0.0.1:1/", "--sizes", "1,,2"], "--sizes 1,,2"),
                       (["ws://127.0.0.1:1/", "--backend", "kqueue"], "--backend kqueue"),
                       (["ws://127.0.0.1:1/", "--threads", "0"], "--threads 0"),
                       (["ws://127.0.0.1:1/", "--connect-rate", "0"], "--connect-rate 0"),
                       (["ws://127.0.0.1:1/", "--frobnicate"], "an unknown option"),
                       (["ws://127.0.0.1:1/", "-c"], "a missing value"),
                       (["http://127.0.0.1:1/"], "an http:// URL")]:
        rc, out, err = load(*args, timeout=20)
        check(f"usage: {what} exits 2 with a message", rc == 2 and out == "" and "ws6455 load:" in err,
              f"rc={rc} out={out!r} err={err[:200]!r}")
    rc, out, _ = load("--help", timeout=20)
    check("--help prints the usage, exit 0", rc == 0 and "usage: ws6455 load" in out, f"rc={rc}")


def test_server_down():
    port = free_port()
    t = time.monotonic()
    rc, out, err = load(f"ws://127.0.0.1:{port}/", "-c", "50", "-t", "2", timeout=30)
    elapsed = time.monotonic() - t
    lines = err.strip().splitlines()
    check("server down: exit 1, one line naming the refusal, no result line",
          rc == 1 and out == "" and len(lines) == 1 and "cannot connect" in lines[0] and "refused" in lines[0],
          f"rc={rc} out={out!r} err={err!r}")
    check("server down: it gives up at once", elapsed < 5, f"{elapsed:.1f} s")


def test_http_403():
    """A plain HTTP server that answers every request with 403."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    ls.settimeout(0.2)
    port = ls.getsockname()[1]
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                c.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden")
            except OSError:
                pass
            finally:
                c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        rc, out, err = load(f"ws://127.0.0.1:{port}/", "-c", "10", "-t", "2", timeout=30)
        lines = err.strip().splitlines()
        check("403 from the server: exit 1, one line naming the status",
              rc == 1 and out == "" and len(lines) == 1 and "403" in lines[0], f"rc={rc} out={out!r} err={err!r}")
    finally:
        stop.set()
        th.join(timeout=5)
        ls.close()


def test_chat_404():
    srv = Server("--mode", "chat")
    try:
        rc, out, err = load(srv.url + "nope", "-c", "4", "-t", "2", timeout=30)
        lines = err.strip().splitlines()
        check("serve --mode chat on a path it does not serve: exit 1, one line",
              rc == 1 and out == "" and len(lines) == 1 and "404" in lines[0], f"rc={rc} out={out!r} err={err!r}")
    finally:
        srv.stop()


# ------------------------------------------------------------------ clean runs

def clean_run(name, url, *args, seconds=None, connections=None):
    rc, out, err = load(url, *args, timeout=90)
    r = parse_line(out)
    ok = rc == 0 and r is not None and r["errors"] == 0 and r["msgs_per_s"] > 0 and r["msgs"] > 0 and \
        r["connect_failures"] == 0 and r["p50_us"] > 0 and r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]
    if ok and connections is not None:
        ok = r["connections"] == connections
    if ok and seconds is not None:
        ok = abs(r["seconds"] - seconds) < 0.5
    check(name, ok and err == "", f"rc={rc} out={out!r} err={err[:300]!r}")
    return r


def test_backends():
    for backend in ["epoll", "io_uring"]:
        srv = Server("--backend", backend)
        try:
            r = clean_run(f"serve --backend {backend}: -c 50 -p 4 -s 1024 -t 2 is clean", srv.url,
                          "-c", "50", "-p", "4", "-s", "1024", "-t", "2", "--backend", backend,
                          seconds=2, connections=50)
            if r:
                check(f"serve --backend {backend}: MiB/s is msgs/s x 1 KiB",
                      abs(r["MiB_per_s"] - r["msgs_per_s"] / 1024) <= 0.01 * r["MiB_per_s"] + 0.01, r)
                check(f"serve --backend {backend}: cpu_us_per_msg is reported", r["cpu_us_per_msg"] > 0, r)
        finally:
            srv.stop()


def test_variants():
    srv = Server("--backend", "epoll")
    try:
        clean_run("--sizes 0,125,126,65536 --binary", srv.url, "-c", "8", "-p", "2",
                  "--sizes", "0,125,126,65536", "--binary", "-t", "1", connections=8)
        clean_run("--text -s 300", srv.url, "-c", "8", "-p", "2", "-s", "300", "--text",
                  "-t", "1")
        clean_run("--threads 2 -c 50", srv.url, "-c", "50", "-p", "2", "--threads", "2", "-t", "1",
                  connections=50)
        clean_run("--warmup 0.5 -t 1 (only the measured second counts)", srv.url, "-c", "4", "--warmup", "0.5",
                  "-t", "1", seconds=1)
        # -n: stops after that many messages (all of them counted, measured on their own).
        t = time.monotonic()
        r = clean_run("-n 1000 -c 10 -p 4", srv.url, "-c", "10", "-p", "4", "-n", "1000")
        check("-n 1000: about 1000 messages, quickly", r is not None and 1000 <= r["msgs"] <= 1100 and
              time.monotonic() - t < 10, r)
        r = clean_run("-n 1001 --threads 2 -c 3", srv.url, "-c", "3", "--threads", "2", "-n", "1001")
        check("-n 1001 over 2 threads: the shares add up", r is not None and r["msgs"] == 1001, r)
        rc, out, err = load(srv.url, "-c", "4", "-p", "2", "-t", "1", "--json", timeout=60)
        try:
            j = json.loads(out)
        except ValueError:
            j = None
        check("--json: one JSON object with every field",
              rc == 0 and isinstance(j, dict) and list(j) == FIELDS and j["errors"] == 0 and j["msgs_per_s"] > 0,
              f"rc={rc} out={out!r} err={err[:200]!r}")
        # Many connections at a bounded rate: 200 at 400/s take about half a second to open.
        t = time.monotonic()
        r = clean_run("--connect-rate 400 -c 200", srv.url, "-c", "200", "--connect-rate", "400", "-t", "0.5",
                      connections=200)
        check("--connect-rate 400 -c 200: the connects are paced", time.monotonic() - t >= 0.9, r)
    finally:
        srv.stop()


def test_deflate():
    srv = Server("--backend", "io_uring", "--deflate")
    try:
        clean_run("--deflate --text against serve --deflate", srv.url, "-c", "8", "-p", "4", "-s", "2000",
                  "--text", "--deflate", "-t", "1", connections=8)
        clean_run("--deflate --binary --sizes 0,1,70000 against serve --deflate", srv.url, "-c", "4", "-p", "2",
                  "--sizes", "0,1,70000", "--deflate", "-t", "1", connections=4)
    finally:
        srv.stop()


# ------------------------------------------------------------------ misbehaving servers

class PyServer:
    """A Python websockets server on a thread of its own: `handler(ws)` per connection."""

    def __init__(self, handler):
        import websockets
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main():
            self.stop_future = self.loop.create_future()
            async with websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                started.set()
                await self.stop_future

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("the Python server did not start")
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stop(self):
        self.loop.call_soon_threadsafe(lambda: self.stop_future.done() or self.stop_future.set_result(None))
        self.thread.join(timeout=10)


def test_corrupting_server():
    count = [0]

    async def corrupt(ws, path=None):
        import websockets
        try:
            async for msg in ws:
                count[0] += 1
                if count[0] % 10 == 0 and len(msg) > 0:
                    b = bytearray(msg if isinstance(msg, bytes) else msg.encode())
                    b[len(b) // 2] ^= 0x01
                    msg = bytes(b) if isinstance(msg, bytes) else b.decode()
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass  # the load generator's close, with echoes still on their way

    srv = PyServer(corrupt)
    try:
        for mode in ["--binary", "--text"]:
            rc, out, err = load(srv.url, "-c", "4", "-p", "2", "-s", "64", mode, "-t", "1", timeout=60)
            r = parse_line(out)
            check(f"a server that flips a byte of every 10th echo ({mode}): errors > 0, exit 1",
                  rc == 1 and r is not None and r["errors"] > 0 and r["msgs"] > 0 and "differs" in err,
                  f"rc={rc} out={out!r} err={err[:300]!r}")
            if r:
                total = r["errors"] + r["msgs"]
                check(f"{mode}: about one echo in ten counted as an error",
                      0.05 * total <= r["errors"] <= 0.2 * total + 10, r)
    finally:
        srv.stop()


def test_closing_server():
    async def close_early(ws, path=None):
        import websockets
        n = 0
        try:
            async for msg in ws:
                n += 1
                if n == 20:
                    await ws.close(1011, "going away")
                    return
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    srv = PyServer(close_early)
    try:
        rc, out, err = load(srv.url, "-c", "4", "-t", "1", timeout=60)
        r = parse_line(out)
        check("a server that closes the connections: every close is an error, exit 1",
              rc == 1 and r is not None and r["errors"] >= 4 and "closed" in err,
              f"rc={rc} out={out!r} err={err[:300]!r}")
    finally:
        srv.stop()


def main():
    if not os.access(BIN, os.X_OK):
        print(f"no binary at {BIN}")
        sys.exit(1)
    try:
        run_check("usage", test_usage)
        run_check("server down", test_server_down)
        run_check("403", test_http_403)
        run_check("chat 404", test_chat_404)
        run_check("backends", test_backends)
        run_check("variants", test_variants)
        run_check("deflate", test_deflate)
        run_check("corrupting server", test_corrupting_server)
        run_check("closing server", test_closing_server)
    finally:
        serving.stop_all()
    sys.exit(summary())


if __name__ == "__main__":
    main()
