#!/usr/bin/python3
"""The poll() server and client of docs/embedding.md against Python websockets.

Usage: /usr/bin/python3 tests/test_embedding.py path/to/poll_server path/to/poll_client

Everything runs on 127.0.0.1 with ports the kernel picks (port 0, reported back);
every wait is bounded; every process started here is killed at the end.
Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import websockets

from checks import check, run_check, summary
from serving import Listener, stop_all

SERVER_BIN = os.path.abspath(sys.argv[1])
CLIENT_BIN = os.path.abspath(sys.argv[2])
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20]


class PollServer(Listener):
    """poll_server on a free port: the port it prints is the one it bound. `url` ends
    with the slash."""

    def __init__(self):
        # Under AddressSanitizer freed memory waits in a quarantine and would read as RSS
        # growth in the backpressure check; other builds ignore the variable.
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
        super().__init__([SERVER_BIN], "poll_server", env=env)
        self.url += "/"


def payload(kind, size):
    if kind == "text":
        return "".join(chr(ord("a") + i % 26) for i in range(size))
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


def test_echo(server, compression):
    async def go():
        async with websockets.connect(server.url, compression=compression, max_size=None,
                                      open_timeout=10, close_timeout=10) as ws:
            negotiated = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            check(f"echo ({compression}): deflate negotiated as offered",
                  ("permessage-deflate" in negotiated) == (compression == "deflate"), negotiated)
            bad = []
            for size in SIZES:
                for kind in ("text", "binary"):
                    msg = payload(kind, size)
                    await ws.send(msg)
                    back = await asyncio.wait_for(ws.recv(), 20)
                    if back != msg:
                        bad.append((kind, size))
            check(f"echo ({compression}): text and binary, 0 B to 1 MiB, unchanged", not bad, bad)
            await ws.close()
            check(f"echo ({compression}): clean close 1000", ws.close_code == 1000, ws.close_code)
    asyncio.run(asyncio.wait_for(go(), 60))


def test_backpressure(server):
    """16 MiB sent without reading (max_queue=1: websockets itself stops reading too):
    the server stops reading while its output is above 1 MiB, then everything comes back
    in order once we read."""
    async def go():
        async with websockets.connect(server.url, compression=None, max_size=None,
                                      write_limit=1 << 16, max_queue=1) as ws:
            chunks = [os.urandom(256 << 10) for _ in range(64)]
            before = server.rss_kib()

            async def send_all():
                for c in chunks:
                    await ws.send(c)
            sender = asyncio.ensure_future(send_all())
            await asyncio.sleep(1.0)  # nothing read yet: the server must have paused, not buffered 16 MiB
            after = server.rss_kib()
            growth = after - before if after is not None and before is not None else None
            got = []
            for _ in chunks:
                got.append(await asyncio.wait_for(ws.recv(), 20))
            await asyncio.wait_for(sender, 20)
            check("backpressure: 16 MiB flood echoed in order", got == chunks)
            # Unbounded, the server would hold most of the 16 MiB (measured: +11 MiB).
            check("backpressure: server RSS grows by less than 6 MiB while the client does not read",
                  growth is not None and growth < 6 * 1024, f"{growth} KiB")
            await ws.close()
            check("backpressure: clean close", ws.close_code == 1000, ws.close_code)
    asyncio.run(asyncio.wait_for(go(), 60))


def raw_request(port, head):
    """Sends `head`, returns everything the server answers until it closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                b = s.recv(4096)
            except ConnectionResetError:
                break
            if not b:
                break
            data += b
        return data


def test_refusals(server):
    async def go():
        try:
            async with websockets.connect(server.url + "nope", open_timeout=10):
                pass
            return None
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
    status = asyncio.run(asyncio.wait_for(go(), 20))
    check("refusal: another path gets 404 from the application", status == 404, status)
    answer = raw_request(server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    check("refusal: a request that is not an upgrade gets 400 and the connection is closed",
          answer.startswith(b"HTTP/1.1 400 "), answer[:60])


def test_shutdown():
    """SIGTERM: a connected client gets 1001; one that never answers the close is dropped
    after the 5 s close timeout; then the server exits 0."""
    server = PollServer()
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    silent.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = silent.recv(4096)
        if not b:
            break
        head += b
    check("shutdown: the raw client is accepted", head.startswith(b"HTTP/1.1 101 "), head[:40])
    result = {}

    async def go():
        async with websockets.connect(server.url, open_timeout=10) as ws:
            await ws.send("before")
            result["echo"] = await asyncio.wait_for(ws.recv(), 10)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            loop.call_soon(server.proc.send_signal, signal.SIGTERM)
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.exceptions.ConnectionClosed:
                pass
            result["code"] = ws.close_code
            result["seconds"] = loop.time() - t0
    asyncio.run(asyncio.wait_for(go(), 30))
    check("shutdown: echo before the signal", result.get("echo") == "before")
    check("shutdown: the websockets client gets 1001 at once", result.get("code") == 1001 and
          result.get("seconds", 99) < 3, result)
    t0 = time.monotonic()
    status = server.stop(sig=signal.SIGTERM, timeout=15)
    waited = time.monotonic() - t0
    check("shutdown: exit 0 once the silent client is dropped after the close timeout",
          status == 0 and waited < 8, f"status {status} after {waited:.1f} s")
    silent.settimeout(5)
    rest = b""
    try:
        while True:
            b = silent.recv(4096)
            if not b:
                break
            rest += b
    except (OSError, socket.timeout):
        pass
    silent.close()
    check("shutdown: the silent client was sent close 1001", rest[:1] == b"\x88" and rest[2:4] == b"\x03\xe9",
          rest[:8].hex())


def test_client():
    """poll_client against a websockets echo server (run in a thread on its own loop)."""
    ready = threading.Event()
    state = {}

    async def echo(ws, path=None):  # websockets 10 passes the path too
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def serve():
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = asyncio.Event()
        async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as srv:
            state["port"] = srv.sockets[0].getsockname()[1]
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not ready.wait(10):
        check("client: websockets echo server started", False)
        return
    try:
        p = subprocess.run([CLIENT_BIN, f"ws://127.0.0.1:{state['port']}/"], capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        check("client: every echo matched and the close was clean (exit 0)", p.returncode == 0,
              f"exit {p.returncode}: {out} {p.stderr.decode(errors='replace')}")
        check("client: permessage-deflate negotiated with websockets", "open (permessage-deflate)" in out, out)
        check("client: close 1000 from the server", "close 1000" in out, out)
        p = subprocess.run([CLIENT_BIN, "ws://127.0.0.1:1/"], capture_output=True, timeout=20)
        check("client: a refused connection exits 1", p.returncode == 1, p.returncode)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


def main():
    try:
        server = PollServer()
        run_check("echo (deflate)", test_echo, server, "deflate")
        run_check("echo (no compression)", test_echo, server, None)
        run_check("backpressure", test_backpressure, server)
        run_check("refusals", test_refusals, server)
        status = server.stop(signal.SIGTERM)
        check("server: exit 0 on SIGTERM with no connection", status == 0, status)
        run_check("shutdown", test_shutdown)
        run_check("client", test_client)
    finally:
        stop_all()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
