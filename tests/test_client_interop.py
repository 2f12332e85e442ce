#!/usr/bin/python3
"""`ws6455 connect` (the client adapter, lib/io) against real servers over loopback.

Usage: /usr/bin/python3 tests/test_client_interop.py path/to/ws6455

Runs once per backend (`connect --backend epoll`, then `--backend io_uring`; io_uring is
skipped with a line saying so when `connect --backend io_uring` reports it unavailable).

Servers: Python websockets (Debian's 10.4, asyncio `websockets.serve`, in a thread of
this process) and Node's `ws` (npm; installed at test time under /tmp/ws6455-node when
node and npm are there and the module is not, or taken from $WS6455_NODE_MODULES; the
Node part is skipped with a line saying so otherwise). Each server sends text and binary
messages of 0 B to 4 MiB (the 125/126/65535/65536 length boundaries, non-ASCII UTF-8) to
`ws6455 connect --echo`, expects every one back unchanged and of the same type, then
closes with 1000: connect must exit 0. With and without permessage-deflate, checking on
the server side that deflate was negotiated exactly when both sides asked for it.
Then the stdin/print mode, a 403 answer to the upgrade, a refused port and --protocol.

Everything runs on 127.0.0.1 with ports the kernel picks; every wait is bounded.
Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import base64
import hashlib
import http
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import websockets

from checks import PATTERN, check, run_check, sized_messages, summary
from node_ws import NODE_DIR, node_ws_modules
from serving import ThreadedWSServer

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tools/ws6455"
PROC_TIMEOUT = 60  # seconds for one connect run (the largest moves ~20 MiB each way)


def short(s, n=600):
    s = s if isinstance(s, str) else s.decode(errors="replace")
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


# ------------------------------------------------------------------ the messages

SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 65537, 100_000, 1 << 20, 4 << 20]
ASCII_MESSAGE = "plain ASCII, nothing else"


def messages():
    out = sized_messages(SIZES)
    out.append(ASCII_MESSAGE)
    out.append("\u0000\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff")  # UTF-8 length edges
    return out


MESSAGES = messages()
assert MESSAGES[-2] == ASCII_MESSAGE


def describe(m):
    return f"{'text' if isinstance(m, str) else 'binary'} {len(m.encode()) if isinstance(m, str) else len(m)} B"


# ------------------------------------------------------------------ the Python server

class PyServer(ThreadedWSServer):
    """websockets.serve on 127.0.0.1:0 in a thread; what each connection saw goes to results[path]."""

    def __init__(self, compression):
        super().__init__(self._handler, compression=compression, max_size=None, max_queue=None,
                         ping_interval=None, subprotocols=["chat"], process_request=self._process_request,
                         close_timeout=5)
        self.url = f"ws://127.0.0.1:{self.port}"

    async def _process_request(self, path, headers):
        if path.startswith("/forbidden"):
            return http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"go away\n"
        return None

    async def _handler(self, ws):
        path = ws.path
        res = {"extensions": [e.name for e in ws.extensions],
               "request_extensions": ws.request_headers.get("Sec-WebSocket-Extensions", ""),
               "request_protocol": ws.request_headers.get("Sec-WebSocket-Protocol", ""),
               "subprotocol": ws.subprotocol, "error": None, "echoed": 0, "received": []}
        try:
            kind = path.split("/")[1]
            if kind == "seq":  # one message, its echo, the next
                for m in MESSAGES:
                    await ws.send(m)
                    got = await asyncio.wait_for(ws.recv(), 20)
                    if type(got) is not type(m) or got != m:
                        res["error"] = f"{describe(m)} came back as {describe(got)} (differs)"
                        break
                    res["echoed"] += 1
                if res["error"] is None:
                    await ws.close(1000, "done")
            elif kind == "pipe":  # all at once, echoes read meanwhile
                async def sender():
                    for m in MESSAGES:
                        await ws.send(m)

                async def receiver():
                    for m in MESSAGES:
                        got = await asyncio.wait_for(ws.recv(), 30)
                        if type(got) is not type(m) or got != m:
                            res["error"] = f"{describe(m)} came back as {describe(got)} (differs)"
                            return
                        res["echoed"] += 1
                await asyncio.gather(sender(), receiver())
                if res["error"] is None:
                    await ws.close(1000, "done")
            elif kind == "print":  # sends three messages, then records what comes until the client closes
                await ws.send("one")
                await ws.send("twö ✓")
                await ws.send(b"\x01\x02\xff")
                try:
                    while True:
                        res["received"].append(await asyncio.wait_for(ws.recv(), 20))
                except websockets.ConnectionClosed:
                    pass
            elif kind == "serverclose":  # a message and the close in one write (one read, most likely)
                await ws.send("last before close")
                await ws.close(1000, "bye")
            elif kind == "proto":  # nothing but the handshake, then a close
                await ws.close(1000)
            else:
                res["error"] = f"unknown path {path}"
                await ws.close(1011)
        except Exception as e:  # noqa: BLE001
            res["error"] = f"{type(e).__name__}: {e}"
        res["close_code"] = ws.close_code
        res["close_reason"] = ws.close_reason
        self.put(path, res)


# ------------------------------------------------------------------ the Node server

NODE_SERVER = r"""
const WebSocket = require('ws');
const deflate = process.argv[2] === 'deflate';
const SIZES = %SIZES%;
const PATTERN = %PATTERN%;
function textOf(n) {
  const unit = Buffer.byteLength(PATTERN);
  return PATTERN.repeat(Math.floor(n / unit)) + 'a'.repeat(n %% unit);
}
let seed = 6455;
function bytesOf(n) {  // deterministic, incompressible enough
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) { seed = (seed * 1103515245 + 12345) >>> 0; b[i] = seed >>> 24; }
  return b;
}
const MSGS = [];
for (const n of SIZES) { MSGS.push(textOf(n)); MSGS.push(bytesOf(n)); }
MSGS.push(%ASCII%);
MSGS.push('\u0000\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}');
function same(m, data, isBinary) {
  if (typeof m === 'string') return !isBinary && data.toString('utf8') === m;
  return isBinary && Buffer.compare(m, data) === 0;
}
function desc(m) { return typeof m === 'string' ? 'text ' + Buffer.byteLength(m) + ' B' : 'binary ' + m.length + ' B'; }
const wss = new WebSocket.Server({host: '127.0.0.1', port: 0, perMessageDeflate: deflate,
                                  maxPayload: 64 * 1024 * 1024});
wss.on('listening', () => console.log('listening ' + wss.address().port));
wss.on('connection', (ws, req) => {
  const res = {path: req.url, error: null, echoed: 0, extensions: ws.extensions,
               request_extensions: req.headers['sec-websocket-extensions'] || ''};
  const pipe = req.url.startsWith('/pipe');
  let i = 0;
  ws.on('message', (data, isBinary) => {
    if (res.error) return;
    const m = MSGS[i];
    if (m === undefined || !same(m, data, isBinary)) {
      res.error = (m === undefined ? 'extra message' : desc(m)) + ' came back as ' +
                  (isBinary ? 'binary ' : 'text ') + data.length + ' B (differs)';
      ws.close(1011, 'mismatch');
      return;
    }
    res.echoed++;
    i++;
    if (i === MSGS.length) ws.close(1000, 'done');
    else if (!pipe) ws.send(MSGS[i]);
  });
  ws.on('close', (code, reason) => {
    res.close_code = code;
    res.close_reason = reason.toString();
    console.log(JSON.stringify(res));
  });
  ws.on('error', (e) => { res.error = 'error ' + e.message; });
  if (pipe) MSGS.forEach((m) => ws.send(m));
  else ws.send(MSGS[0]);
});
setTimeout(() => process.exit(3), 20 * 60 * 1000);  // never outlives a stuck suite by much
"""


def node_module_dir():
    """Where `require('ws')` resolves (installed when needed); None to skip."""
    return node_ws_modules(lambda why: print(f"skip Node ws server: {why}"))


class NodeServer:
    def __init__(self, modules, deflate):
        self.dir = os.path.join(NODE_DIR, "scripts")
        os.makedirs(self.dir, exist_ok=True)
        script = (NODE_SERVER.replace("%SIZES%", json.dumps(SIZES)).replace("%PATTERN%", json.dumps(PATTERN))
                  .replace("%ASCII%", json.dumps(ASCII_MESSAGE))
                  .replace("%%", "%"))
        self.script = path = os.path.join(self.dir, f"server-{os.getpid()}.js")
        with open(path, "w") as f:
            f.write(script)
        self.proc = subprocess.Popen(["node", path, "deflate" if deflate else "plain"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, "NODE_PATH": modules})
        self.buf = b""
        line = self.line(10)
        if not line or not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"node server did not start: {line!r} {short(self.proc.stderr.read())}")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}"

    def line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
        if b"\n" not in self.buf:
            return None
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def result(self, path, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.line(deadline - time.monotonic())
            if line is None:
                return None
            try:
                res = json.loads(line)
            except ValueError:
                continue
            if res.get("path") == path:
                return res
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        try:
            os.unlink(self.script)
        except OSError:
            pass


# ------------------------------------------------------------------ running connect

def connect(args, stdin_data=None, timeout=PROC_TIMEOUT):
    """Runs `ws6455 connect ARGS`; returns (rc, stdout, stderr, seconds); rc None on a timeout (killed)."""
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "connect", *args], stdin=subprocess.PIPE if stdin_data is not None
                         else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(stdin_data, timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        rc = None
    return rc, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - t0


COUNTER = [0]


def unique(kind):
    COUNTER[0] += 1
    return f"/{kind}/{COUNTER[0]}"


def echo_case(label, server, backend, kind, deflate_flag, expect_deflate):
    path = unique(kind)
    args = [server.url + path, "--echo", "--backend", backend] + (["--deflate"] if deflate_flag else [])
    rc, out, err, secs = connect(args)
    res = server.result(path)
    name = f"[{backend}] {label}: {len(MESSAGES)} messages 0 B..4 MiB echoed ({kind})"
    if res is None:
        check(name, False, f"no server-side result; connect rc={rc} stderr={short(err)}")
        return
    negotiated = bool(res["extensions"]) and "permessage-deflate" in str(res["extensions"])
    check(name, res["error"] is None and res["echoed"] == len(MESSAGES),
          f"echoed {res['echoed']}/{len(MESSAGES)}: {res['error']}; connect rc={rc} stderr={short(err)}")
    check(f"[{backend}] {label}: server saw close 1000 from the client, connect exits 0 ({kind}, {secs:.1f} s)",
          rc == 0 and res.get("close_code") == 1000,
          f"rc={rc} server close_code={res.get('close_code')} stderr={short(err)}")
    check(f"[{backend}] {label}: permessage-deflate {'negotiated' if expect_deflate else 'not negotiated'} ({kind})",
          negotiated == expect_deflate and (("permessage-deflate" in res["request_extensions"]) == deflate_flag),
          f"server extensions={res['extensions']!r} request offered={res['request_extensions']!r}")


# ------------------------------------------------------------------ the tests

def test_python_echo(backend):
    plain = PyServer(None)
    comp = PyServer("deflate")
    try:
        for kind in ("seq", "pipe"):
            echo_case("websockets, no deflate", plain, backend, kind, False, False)
            echo_case("websockets, deflate", comp, backend, kind, True, True)
        echo_case("websockets (deflate) and connect without --deflate", comp, backend, "seq", False, False)
        echo_case("websockets (no deflate) and connect --deflate", plain, backend, "seq", True, False)
    finally:
        plain.stop()
        comp.stop()


def test_node_echo(backend, modules):
    for deflate in (False, True):
        srv = NodeServer(modules, deflate)
        try:
            for kind in ("seq", "pipe"):
                label = f"Node ws {'perMessageDeflate' if deflate else 'no deflate'}"
                echo_case(label, srv, backend, kind, deflate, deflate)
            if deflate:
                echo_case("Node ws perMessageDeflate and connect without --deflate", srv, backend, "seq", False, False)
            else:
                echo_case("Node ws no deflate and connect --deflate", srv, backend, "seq", True, False)
        finally:
            srv.stop()
            err = srv.proc.stderr.read().decode(errors="replace")
            if err.strip():
                print(f"     node stderr: {short(err, 400)}")


def test_print_mode(backend):
    srv = PyServer(None)
    try:
        # Lines on stdin: plain, non-ASCII, empty, CRLF, 70,000 bytes, and a last one without a newline.
        lines = ["hello", "héllo wörld ✓ 𝄞", "", "crlf", "x" * 70000, "tail"]
        stdin = "\n".join(lines[:3]) + "\n" + "crlf\r\n" + lines[4] + "\n" + "tail"
        path = unique("print")
        rc, out, err, _ = connect([srv.url + path, "--close-after-stdin", "--backend", backend],
                                  stdin_data=stdin.encode())
        res = srv.result(path)
        got = res["received"] if res else None
        check(f"[{backend}] print mode: stdin lines arrive as text messages", got == lines,
              f"server got {[m if len(m) < 40 else f'<{len(m)} chars>' for m in got] if got else got}; "
              f"rc={rc} {short(err)}")
        out_lines = out.splitlines()
        check(f"[{backend}] print mode: received messages printed one a line, binary as hex",
              out_lines[:3] == ["one", "twö ✓", "<< binary 0102ff"], f"stdout={short(out)!r}")
        check(f"[{backend}] print mode: --close-after-stdin closes with 1000, connect exits 0",
              rc == 0 and res is not None and res.get("close_code") == 1000 and out_lines[-1:] == ["<< close 1000"],
              f"rc={rc} server close_code={res and res.get('close_code')} stdout tail={out_lines[-2:]!r} "
              f"stderr={short(err)}")

        # The server sends a message and its close back to back; stdin stays open (never read to the end).
        path = unique("serverclose")
        p = subprocess.Popen([BIN, "connect", srv.url + path, "--backend", backend], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        out = p.stdout.read().decode(errors="replace")
        err = p.stderr.read().decode(errors="replace")
        p.stdin.close()
        check(f"[{backend}] print mode: the server's message then its close 1000 'bye': both printed, exit 0",
              rc == 0 and out.splitlines() == ["last before close", "<< close 1000 bye"],
              f"rc={rc} stdout={out!r} stderr={short(err)}")

        # 403 to the upgrade.
        rc, out, err, _ = connect([srv.url + "/forbidden", "--backend", backend], stdin_data=b"x\n", timeout=15)
        check(f"[{backend}] a 403 answer to the upgrade: exit 1, the status in stderr",
              rc == 1 and "403" in err, f"rc={rc} stderr={err!r} stdout={out!r}")

        # --protocol: offered, the server's choice reported.
        for offer in ("chat", "other,chat"):
            path = unique("proto")
            rc, out, err, secs = connect([srv.url + path, "--protocol", offer, "--backend", backend], timeout=15)
            res = srv.result(path)
            check(f"[{backend}] --protocol {offer}: offered, server chose chat, stderr says 'subprotocol chat'",
                  rc == 0 and res is not None and res["subprotocol"] == "chat"
                  and "subprotocol chat" in err,
                  f"rc={rc} server saw offer={res and res['request_protocol']!r} chose={res and res['subprotocol']!r} "
                  f"stderr={err!r}")
        # The server closes at once after the handshake: the client answers, sees the server's EOF
        # (websockets half-closes right after the close handshake) and exits, well before its
        # close timeout (5 s).
        check(f"[{backend}] after a clean close initiated by the server, connect exits at once (< 2 s)",
              rc == 0 and secs < 2.0, f"rc={rc} took {secs:.2f} s")
    finally:
        srv.stop()

    run_check(f"[{backend}] one write", raw_one_write, backend)

    # Nothing listening.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # bound, never listening: connecting is refused
    try:
        rc, out, err, _ = connect([f"ws://127.0.0.1:{port}/", "--backend", backend], stdin_data=b"", timeout=15)
    finally:
        s.close()
    check(f"[{backend}] a refused port: exit 1 with a clear message",
          rc == 1 and "refused" in err.lower(), f"rc={rc} stderr={err!r}")


def raw_one_write(backend):
    """A raw server sends the 101, a text message and a close 1000 in a single write: the client must
    print the message, then the close, and answer the close."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(15)
    port = ls.getsockname()[1]
    seen = {}

    def serve():
        try:
            s, _ = ls.accept()
            s.settimeout(10)
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = s.recv(4096)
                if not chunk:
                    return
                req += chunk
            key = [ln.split(b":", 1)[1].strip() for ln in req.split(b"\r\n")
                   if ln.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            msg = "one write ✓".encode()
            close = struct.pack("!H", 1000) + b"bye"
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                      + bytes([0x81, len(msg)]) + msg + bytes([0x88, len(close)]) + close)
            data = b""
            while len(data) < 2 or len(data) < 6 + (data[1] & 0x7F):  # the masked close reply
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            seen["reply"] = data
            if len(data) >= 8 and data[0] == 0x88 and data[1] & 0x80:
                n = data[1] & 0x7F
                mask = data[2:6]
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[6:6 + n]))
                seen["code"] = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
            s.close()
        except Exception as e:  # noqa: BLE001
            seen["error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        rc, out, err, secs = connect([f"ws://127.0.0.1:{port}/", "--backend", backend], stdin_data=b"", timeout=15)
    finally:
        t.join(15)
        ls.close()
    check(f"[{backend}] 101 + a message + close 1000 in one write: both printed, close answered with 1000, exit 0",
          rc == 0 and out.splitlines() == ["one write ✓", "<< close 1000 bye"] and seen.get("code") == 1000,
          f"rc={rc} stdout={out!r} stderr={short(err)} server saw {seen}")


def test_auto():
    srv = PyServer("deflate")
    try:
        echo_case("websockets, deflate", srv, "auto", "seq", True, True)
    finally:
        srv.stop()


def io_uring_unavailable():
    """None when `connect --backend io_uring` can run here, else its explanation."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        rc, out, err, _ = connect([f"ws://127.0.0.1:{port}/", "--backend", "io_uring"], stdin_data=b"", timeout=15)
    finally:
        s.close()
    if "io_uring" in err:
        return err.strip()
    return None


def test_addresses():
    """The client takes IPv6 literals and resolves names: `ws6455 serve` on ::1 for
    ws://[::1]:PORT/, and on 127.0.0.1 for ws://localhost:PORT/ (getaddrinfo)."""
    for host, url_host in (("::1", "[::1]"), ("127.0.0.1", "localhost")):
        srv = subprocess.Popen([BIN, "serve", "--host", host, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            line = srv.stdout.readline().decode()
            m = re.match(r"listening on ws://\[?[0-9a-f:.]+\]?:(\d+)/", line)
            if not m:
                check(f"serve listens on {host}", False, line)
                continue
            url = f"ws://{url_host}:{m.group(1)}/"
            rc, out, err, _ = connect([url, "--close-after-stdin"], b"by name or v6\n")
            check(f"connect {url_host}: echo and a clean close", rc == 0 and out.splitlines()[:1] == ["by name or v6"],
                  f"rc={rc} out={short(out)} err={short(err)}")
        finally:
            srv.kill()
            srv.wait()


def main():
    if not os.access(BIN, os.X_OK):
        print(f"not executable: {BIN}")
        print("0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    modules = node_module_dir()
    backends = ["epoll"]
    why = io_uring_unavailable()
    if why:
        print(f"skip io_uring: `ws6455 connect --backend io_uring` says: {why}")
    else:
        backends.append("io_uring")
    for backend in backends:
        run_check(f"[{backend}] Python websockets echo", test_python_echo, backend)
        if modules:
            run_check(f"[{backend}] Node ws echo", test_node_echo, backend, modules)
        run_check(f"[{backend}] print mode, 403, refused, --protocol", test_print_mode, backend)
    # The automatic choice, once.
    run_check("[auto] Python websockets echo", test_auto)
    run_check("IPv6 and names", test_addresses)
    print(f"suite time {time.monotonic() - t0:.1f} s")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
