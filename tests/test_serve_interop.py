#!/usr/bin/python3
"""`ws6455 serve` and `ws6455 connect` against real clients over loopback.

Usage: /usr/bin/python3 tests/test_serve_interop.py path/to/ws6455 [serve options...]

The serve options after the binary (for example `--backend io_uring --threads 2`)
are given to every server the suite starts: the suite runs once per backend.
This suite is the echo mode and what every mode shares; `--mode chat` (its JSON
protocol, rooms across loops) is tests/test_chat.py's, and with Redis behind nginx
tests/test_deployment.py's.

Clients: Python websockets (asyncio client, Debian's 10.4), wsproto, raw sockets
for what a well-behaved client never does (slow handshake, never reading, never
answering pings), `ws6455 connect`, and Node's `ws` when both node and the
module are installed (optional). Everything runs on 127.0.0.1 with ports the
kernel picks (--port 0); every wait is bounded; servers are killed at the end.
Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import websockets
import wsproto
import wsproto.events as wse
from wsproto.extensions import PerMessageDeflate

import serving
from checks import check, run_check, runnable, summary
from node_ws import node_ws_modules

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/ws6455"
SERVE_ARGS = sys.argv[2:]


def start_server(*args, env=None):
    """`ws6455 serve --port 0 [suite options] [args]`, started (serving.Server)."""
    return serving.Server(BIN, *SERVE_ARGS, *args, env=env)


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ------------------------------------------------------------------ raw socket helpers

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def raw_connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def read_head(s, timeout=5):
    """Reads an HTTP head (and whatever followed it in the same reads)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def upgrade_request(path="/", version="13", extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()


def raw_upgrade(port, path="/"):
    s = raw_connect(port)
    s.sendall(upgrade_request(path))
    head, rest = read_head(s)
    if not head.startswith("HTTP/1.1 101"):
        raise RuntimeError(f"no 101: {head!r}")
    return s, rest


def masked_frame(opcode, payload, fin=True):
    """A client frame with the all-zero masking key: masked, and the payload unchanged."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + b"\0\0\0\0" + payload


def read_frames(s, buf, want_close=True, timeout=5):
    """Reads server frames until a close frame (or EOF, or timeout). Returns (frames, eof)."""
    frames = []
    deadline = time.monotonic() + timeout
    eof = False
    while time.monotonic() < deadline:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack("!H", buf[2:4])[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack("!Q", buf[2:10])[0]
                off = 10
            if len(buf) < off + n:
                break
            frames.append((buf[0] & 0x0F, bytes(buf[off:off + n])))
            del buf[:off + n]
        if want_close and frames and frames[-1][0] == 8:
            break
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            eof = True
            break
        if not chunk:
            eof = True
            break
        buf += chunk
    return frames, eof


def wait_eof(s, timeout):
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


# ------------------------------------------------------------------ websockets (asyncio)

SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 100_000, 1 << 20]


async def echo_sizes(url, compression):
    async with websockets.connect(url, compression=compression, max_size=None, ping_interval=None) as ws:
        neg = [e.name for e in ws.extensions]
        rnd = os.urandom(1 << 20)
        for n in SIZES:
            text = ("héllo wörld ✓ " * (n // 10 + 1)).encode()[:n].decode("utf-8", "ignore")
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != text:
                return neg, f"text {n}"
            data = rnd[:n]
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != data:
                return neg, f"binary {n}"
        return neg, None


def test_echo(srv, srv_deflate):
    neg, err = arun(echo_sizes(srv.url + "/", None))
    check("websockets echo text+binary 0 B..1 MiB, no deflate", err is None and neg == [], f"{err} {neg}")
    neg, err = arun(echo_sizes(srv.url + "/", "deflate"))
    check("websockets offers deflate to a server without --deflate: not negotiated", err is None and neg == [],
          f"{err} {neg}")
    neg, err = arun(echo_sizes(srv_deflate.url + "/", "deflate"))
    check("websockets echo 0 B..1 MiB with permessage-deflate", err is None and neg == ["permessage-deflate"],
          f"{err} {neg}")


async def ping_close_protocol(url):
    out = {}
    async with websockets.connect(url, subprotocols=["chat.v2", "chat.v1"], ping_interval=None) as ws:
        out["subprotocol"] = ws.subprotocol
        waiter = await ws.ping(b"are you there")
        await asyncio.wait_for(waiter, 5)
        out["pong"] = True
        await ws.close(code=4001, reason="bye now")
        out["code"] = ws.close_code
        out["reason"] = ws.close_reason
    return out


def test_ping_close_protocol(srv):
    out = arun(ping_close_protocol(srv.url + "/"))
    check("subprotocol: the client's first offer is chosen", out.get("subprotocol") == "chat.v2", str(out))
    check("ping answered with a pong", out.get("pong") is True, str(out))
    check("close handshake echoes the code 4001", out.get("code") == 4001, str(out))


async def graceful_stop(srv):
    async with websockets.connect(srv.url + "/", ping_interval=None) as ws:
        await ws.send("x")
        await asyncio.wait_for(ws.recv(), 5)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


async def large_then_quiet(srv):
    async with websockets.connect(srv.url + "/", max_size=None, ping_interval=None) as ws:
        base = srv.rss_kib()
        grown = []
        for _ in range(3):
            await ws.send(os.urandom(16 << 20))
            await asyncio.wait_for(ws.recv(), 30)
            grown.append(srv.rss_kib() - base)
        # The peer is quiet (no read, no message): the release comes 0.5 s after the
        # last input; polled for up to 5 s.
        deadline = time.monotonic() + 5
        while True:
            await asyncio.sleep(0.25)
            quiet = srv.rss_kib() - base
            if quiet < 12 * 1024 or time.monotonic() > deadline:
                return grown, quiet


def test_storage_released():
    # Under ASan, freed memory waits in a quarantine (RSS would not show the release).
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "quarantine_size_mb=0"]))
    srv = start_server(env=env)
    try:
        grown, quiet = arun(large_then_quiet(srv))
        check("16 MiB echoes: storage is kept across messages (no growth after the first)",
              grown[2] - grown[0] < 4096, f"{grown} KiB")
        # io_uring's receive buffers (8 MiB, shared by all connections) stay touched.
        check("a quiet peer: the 16 MiB message's storage is given back without another read",
              quiet < 12 * 1024, f"{quiet} KiB 5 s later (peak {max(grown)} KiB)")
    finally:
        srv.stop()


def test_uring_fallback():
    """Where io_uring is refused, auto says so in one line and serves on epoll; an
    explicit --backend io_uring fails instead."""
    env = dict(os.environ, WS6455_NO_IO_URING="1")
    p = subprocess.Popen([BIN, "serve", "--port", "0", *SERVE_ARGS, "--backend", "auto"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline()
        m = re.match(rb"listening on ws://127\.0\.0\.1:(\d+)/\n", line)
        echoed = None
        if m:
            async def one():
                async with websockets.connect(f"ws://127.0.0.1:{int(m.group(1))}/", ping_interval=None) as ws:
                    await ws.send("still served")
                    return await asyncio.wait_for(ws.recv(), 5)
            echoed = arun(one())
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    said = [l for l in err.decode().splitlines() if "io_uring" in l]
    check("io_uring refused: auto says so in one line and serves on epoll",
          echoed == "still served" and len(said) == 1 and "using epoll" in said[0], f"{echoed!r} {said}")
    r = subprocess.run([BIN, "serve", "--port", "0", *SERVE_ARGS, "--backend", "io_uring"], env=env,
                       capture_output=True, text=True, timeout=10)
    check("io_uring refused: --backend io_uring fails with the reason", r.returncode == 1 and "io_uring" in r.stderr,
          f"rc={r.returncode} {r.stderr!r}")


async def chosen_protocol(url, offers):
    async with websockets.connect(url, subprotocols=offers, ping_interval=None) as ws:
        return ws.subprotocol


def test_protocol_allowlist():
    """--protocols a,b: the client's first offer that is listed wins; none listed, none chosen."""
    srv = start_server("--protocols", "chat.v1,chat.v2")
    try:
        got = arun(chosen_protocol(srv.url + "/", ["x", "chat.v2", "chat.v1"]))
        check("--protocols: the client's first listed offer is chosen", got == "chat.v2", repr(got))
        got = arun(chosen_protocol(srv.url + "/", ["x", "y"]))
        check("--protocols: an offer with nothing listed gets no subprotocol", got is None, repr(got))
    finally:
        srv.stop()


def test_graceful_stop():
    srv = start_server()
    code = arun(graceful_stop(srv))
    rc = srv.stop(signal.SIGTERM)
    check("SIGTERM: open connections get close 1001, server exits 0", code == 1001 and rc == 0, f"{code} rc={rc}")


# ------------------------------------------------------------------ wsproto

def wsproto_collect(port, deflate, messages):
    """A wsproto client session: sends `messages`, joins the echoes (wsproto reports
    chunks), closes 1000 after the last. Returns (AcceptConnection, echoes, close code)."""
    conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    s = raw_connect(port)
    exts = [PerMessageDeflate()] if deflate else []
    s.sendall(conn.send(wse.Request(host="127.0.0.1", target="/", extensions=exts, subprotocols=["p1"])))
    received, cur, accepted, closed = [], None, None, None
    deadline = time.monotonic() + 15
    s.settimeout(1)
    while time.monotonic() < deadline and closed is None:
        try:
            data = s.recv(1 << 16)
        except socket.timeout:
            continue
        conn.receive_data(data or None)
        for ev in conn.events():
            if isinstance(ev, wse.AcceptConnection):
                accepted = ev
                for m in messages:
                    s.sendall(conn.send(wse.Message(data=m)))
            elif isinstance(ev, (wse.TextMessage, wse.BytesMessage)):
                cur = ev.data if cur is None else cur + ev.data
                if ev.message_finished:
                    received.append(cur)
                    cur = None
                    if len(received) == len(messages):
                        s.sendall(conn.send(wse.CloseConnection(code=1000, reason="done")))
            elif isinstance(ev, wse.CloseConnection):
                closed = ev.code
            elif isinstance(ev, wse.RejectConnection):
                closed = -1
        if not data:
            break
    s.close()
    return accepted, received, closed


def test_wsproto(srv, srv_deflate):
    msgs = ["hello", "", "ünïcödé ✓", b"\x00\xff" * 40000, "x" * 200_000, b""]
    for label, server, deflate in (("plain", srv, False), ("deflate", srv_deflate, True)):
        accepted, received, closed = wsproto_collect(server.port, deflate, msgs)
        ext = [e.name for e in accepted.extensions] if accepted else None
        check(f"wsproto echo ({label})", received == msgs and closed == 1000,
              f"got {len(received)} of {len(msgs)}, close {closed}")
        check(f"wsproto negotiation ({label})",
              accepted is not None and accepted.subprotocol == "p1" and
              ext == (["permessage-deflate"] if deflate else []), f"{ext}")


# ------------------------------------------------------------------ raw HTTP and hostile clients

def test_http(srv):
    s = raw_connect(srv.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n")
    head, rest = read_head(s)
    body = rest
    m = re.search(r"Content-Length: (\d+)", head)
    while m and len(body) < int(m.group(1)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    s.close()
    check("GET / answers 200 text/html with the page",
          head.startswith("HTTP/1.1 200") and "Content-Type: text/html" in head and b"new WebSocket" in body, head)
    s = raw_connect(srv.port)
    s.sendall(b"GET /nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head, _ = read_head(s)
    s.close()
    check("GET /other answers 404", head.startswith("HTTP/1.1 404"), head)
    s = raw_connect(srv.port)
    s.sendall(upgrade_request(version="8"))
    head, _ = read_head(s)
    s.close()
    check("Sec-WebSocket-Version 8 answers 426 with Sec-WebSocket-Version: 13",
          head.startswith("HTTP/1.1 426") and "Sec-WebSocket-Version: 13" in head, head)
    # Frames sent in the same packet as the head are handled (early data).
    s = raw_connect(srv.port)
    s.sendall(upgrade_request() + masked_frame(1, b"early"))
    head, rest = read_head(s)
    frames, _ = read_frames(s, bytearray(rest), want_close=False, timeout=1)
    s.close()
    check("a frame right behind the request head is echoed", head.startswith("HTTP/1.1 101") and
          (1, b"early") in frames, f"{head[:20]} {frames}")


def test_slow_handshake():
    srv = start_server("--handshake-timeout", "1")
    try:
        s = raw_connect(srv.port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock")
        t0 = time.monotonic()
        eof = wait_eof(s, 6)
        dt = time.monotonic() - t0
        s.close()
        check("a half-sent head is dropped after --handshake-timeout 1", eof and 0.5 < dt < 4.5, f"eof={eof} {dt:.2f}s")
    finally:
        srv.stop()


def test_idle():
    srv = start_server("--idle-timeout", "1.2", "--ping-interval", "0.4", "--close-timeout", "1")
    try:
        # A client that never answers pings: pings, then close 1001, then the server drops it.
        s, rest = raw_upgrade(srv.port)
        t0 = time.monotonic()
        frames, _ = read_frames(s, bytearray(rest), want_close=True, timeout=5)
        dt = time.monotonic() - t0
        pings = sum(1 for op, _ in frames if op == 9)
        close = [p for op, p in frames if op == 8]
        code = struct.unpack("!H", close[0][:2])[0] if close and len(close[0]) >= 2 else None
        check("keepalive: pings while silent, then close 1001 at the idle timeout",
              pings >= 1 and code == 1001 and 0.5 < dt < 4, f"pings={pings} code={code} {dt:.2f}s")
        eof = wait_eof(s, 4)
        dt = time.monotonic() - t0
        s.close()
        check("close timeout: a peer that never answers the close is dropped", eof and dt < 5, f"{dt:.2f}s")

        # A client that answers pings (websockets does) stays connected past the idle timeout.
        async def live():
            async with websockets.connect(srv.url + "/", ping_interval=None) as ws:
                await asyncio.sleep(2.5)
                await ws.send("still here")
                return await asyncio.wait_for(ws.recv(), 5)
        check("keepalive: a peer answering pings is not idle", arun(live()) == "still here")
    finally:
        srv.stop()


def test_never_reading():
    srv = start_server()
    try:
        before = srv.rss_kib()
        s, _ = raw_upgrade(srv.port)
        s.setblocking(False)
        frame = masked_frame(2, b"\xab" * 65536)
        sent = 0
        stalled_since = None
        deadline = time.monotonic() + 20
        view = memoryview(frame)
        pos = 0
        while time.monotonic() < deadline and sent < (512 << 20):
            try:
                n = s.send(view[pos:])
                sent += n
                pos = (pos + n) % len(frame)
                stalled_since = None
            except BlockingIOError:
                # The server stopped reading us: give it a moment, and stop once writes stall.
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 1.0:
                    break
                select.select([], [s], [], 0.1)
        after = srv.rss_kib()
        growth_mib = (after - before) / 1024
        check("a never-reading client is paused: sends stall long before 512 MiB",
              sent < (256 << 20), f"sent {sent >> 20} MiB")
        check("a never-reading client: server RSS growth < 100 MiB", growth_mib < 100,
              f"{growth_mib:.1f} MiB after {sent >> 20} MiB sent")
        print(f"     (never-reading client: sent {sent / (1 << 20):.1f} MiB before stalling; "
              f"server RSS {before} -> {after} KiB)")

        # The server still serves others meanwhile.
        async def other():
            async with websockets.connect(srv.url + "/", ping_interval=None) as ws:
                await ws.send("ok?")
                return await asyncio.wait_for(ws.recv(), 5)
        check("other clients are served while one is stalled", arun(other()) == "ok?")
        s.close()
    finally:
        srv.stop()


async def many_clients(url, n):
    clients = await asyncio.gather(*[websockets.connect(url, ping_interval=None, compression=None)
                                     for _ in range(n)])
    try:
        for i, ws in enumerate(clients):
            await ws.send(f"client {i}")
        got = [await asyncio.wait_for(ws.recv(), 10) for ws in clients]
        return sum(1 for i, g in enumerate(got) if g == f"client {i}")
    finally:
        await asyncio.gather(*[ws.close() for ws in clients])


def test_many_and_limits(srv):
    n = 200
    ok = arun(many_clients(srv.url + "/", n))
    check(f"{n} concurrent clients each get their own echo", ok == n, f"{ok} of {n}")
    small = start_server("--max-message", "1000")
    try:
        async def too_big():
            async with websockets.connect(small.url + "/", ping_interval=None, compression=None) as ws:
                await ws.send("y" * 1000)
                first = await asyncio.wait_for(ws.recv(), 5)
                await ws.send("y" * 1001)
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return len(first), ws.close_code
        n_first, code = arun(too_big())
        check("--max-message 1000: 1000 B echoed, 1001 B closes with 1009", n_first == 1000 and code == 1009,
              f"{n_first} {code}")
        # Many pings from a client that never reads: queued pongs are capped, RSS stays flat.
        s, _ = raw_upgrade(small.port)
        before = small.rss_kib()
        s.setblocking(False)
        ping = masked_frame(9, b"p" * 125) * 1000
        sent = 0
        t_end = time.monotonic() + 5
        while sent < (64 << 20) and time.monotonic() < t_end:
            try:
                sent += s.send(ping)
            except BlockingIOError:
                select.select([], [s], [], 0.2)
        growth = (small.rss_kib() - before) / 1024
        s.close()
        check("a ping flood from a non-reading client does not grow the server", growth < 50,
              f"{growth:.1f} MiB after {sent >> 20} MiB of pings")
    finally:
        small.stop()


def test_connect_tool(srv, srv_deflate):
    lines = ["first line", "ünïcödé", "", "last"]
    for label, server, extra in (("plain", srv, []), ("deflate", srv_deflate, ["--deflate"])):
        r = subprocess.run([BIN, "connect", server.url + "/", "--close-after-stdin", *extra],
                           input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=15)
        out = r.stdout.splitlines()
        check(f"ws6455 connect echoes stdin lines ({label})",
              r.returncode == 0 and out == lines + ["<< close 1000"], f"rc={r.returncode} {out} {r.stderr}")
    r = subprocess.run([BIN, "connect", srv.url + "/", "--protocol", "a,b", "--header", "X-Test: 1",
                        "--close-after-stdin"], input="x\n", capture_output=True, text=True, timeout=15)
    check("ws6455 connect --protocol reports the chosen subprotocol",
          r.returncode == 0 and "subprotocol a" in r.stderr, f"rc={r.returncode} {r.stderr}")
    r2 = subprocess.run([BIN, "connect", "wss://127.0.0.1:1/"], input="", capture_output=True, text=True, timeout=15)
    # wss:// is supported (tests/test_tls.py); here nothing listens: a plain connect failure.
    check("ws6455 connect wss:// to a closed port fails (exit 1)", r2.returncode == 1 and "refused" in r2.stderr,
          r2.stderr)


def test_node(srv):
    node = shutil.which("node")
    mod = node_ws_modules(lambda why: print(f"skip Node ws: {why}"))
    if not mod:
        return
    script = r"""
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1], {perMessageDeflate: true});
const msgs = ['hello', 'x'.repeat(100000), Buffer.from([1, 2, 3])];
let got = [];
ws.on('open', () => msgs.forEach((m) => ws.send(m)));
ws.on('message', (d, isBinary) => {
  got.push(isBinary ? 'B' + d.toString('hex') : 'T' + d.toString().length);
  if (got.length === msgs.length) ws.close(1000, 'done');
});
ws.on('close', (code) => { console.log(JSON.stringify({code, got, ext: ws.extensions})); process.exit(0); });
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
setTimeout(() => { console.log('timeout'); process.exit(1); }, 10000);
"""
    r = subprocess.run([node, "-e", script, srv.url + "/"], capture_output=True, text=True, timeout=20,
                       env={**os.environ, "NODE_PATH": mod})
    check("Node ws echo with permessage-deflate", '"code":1000' in r.stdout and '"T5","T100000","B010203"' in r.stdout
          and "permessage-deflate" in r.stdout, r.stdout + r.stderr)


def main():
    if not runnable(BIN):
        return 1
    try:
        srv = start_server()
        srv_deflate = start_server("--deflate")
        run_check("echo", test_echo, srv, srv_deflate)
        run_check("ping/close/subprotocol", test_ping_close_protocol, srv)
        run_check("wsproto", test_wsproto, srv, srv_deflate)
        run_check("http", test_http, srv)
        run_check("subprotocol allowlist", test_protocol_allowlist)
        run_check("storage released", test_storage_released)
        run_check("io_uring fallback", test_uring_fallback)
        run_check("connect tool", test_connect_tool, srv, srv_deflate)
        run_check("many clients and limits", test_many_and_limits, srv)
        run_check("node ws", test_node, srv_deflate)
        run_check("slow handshake", test_slow_handshake)
        run_check("idle", test_idle)
        run_check("never reading", test_never_reading)
        run_check("graceful stop", test_graceful_stop)
        for s in (srv, srv_deflate):
            alive = s.alive()
            rc = s.stop(signal.SIGINT)
            err = s.log_tail() if rc else ""
            check(f"server on port {s.port} still running, exits 0 on SIGINT", alive and rc == 0,
                  f"alive={alive} rc={rc} {err}")
    except Exception as e:  # noqa: BLE001
        check("setup", False, f"{type(e).__name__}: {e}")
    finally:
        serving.stop_all()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
