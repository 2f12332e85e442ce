#!/usr/bin/python3
"""wss:// end to end: `ws6455 serve --tls-cert/--tls-key` and `ws6455 connect wss://`.

Usage: /usr/bin/python3 tests/test_tls.py path/to/ws6455

A throwaway CA and server certificates are made at test time with the `openssl`
command in a temporary directory (removed at the end; no key is committed).

  - Python websockets over ssl as a client of our server (echo 0 B..4 MiB, with and
    without permessage-deflate), on epoll and io_uring, one loop and --threads 2
  - Python websockets over ssl as a server for `ws6455 connect --echo wss://...`
  - Node `ws` over wss (installed into /tmp/ws6455-node when missing; skipped without node)
  - hostile: garbage instead of a ClientHello, a handshake that stops half way (dropped at
    the handshake timeout), one byte a second, a TLS 1.2 renegotiation attempt, a truncated
    record, a corrupted record (answered with bad_record_mac), plain HTTP on the TLS port;
    the server keeps serving and leaks nothing (/proc/PID/fd count, RSS)
  - the client: hostname mismatch and an untrusted CA fail with the reason, and the
    server is told with an alert (bad_certificate, unknown_ca), not a bare EOF
  - SIGHUP: new connections get the new certificate, open ones stay
  - Chromium over https + wss (the served page, --ignore-certificate-errors): when node,
    /usr/bin/chromium and playwright-core are there (as tests/test_browser.py), else skipped

127.0.0.1 only, ports picked by the kernel, every wait bounded. Prints "ok"/"FAIL" lines and
"N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import websockets

import serving
from checks import check, run_check, sized_messages, summary
from node_ws import node_ws_modules

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tools/ws6455"
HERE = os.path.dirname(os.path.abspath(__file__))
TMP = tempfile.mkdtemp(prefix="ws6455-tls-")
# RSS growth allowed over the leak rounds; under ASan its quarantine holds freed memory.
RSS_SLACK_KIB = 16384 if "ASAN_OPTIONS" in os.environ else 4096
VARIANTS = [["--backend", "epoll"], ["--backend", "io_uring"], ["--backend", "io_uring", "--threads", "2"],
            ["--backend", "epoll", "--threads", "2"]]


def short(s, n=400):
    s = s if isinstance(s, str) else s.decode(errors="replace")
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


# ------------------------------------------------------------------ certificates

def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=TMP)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")


def make_ca(name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=ws6455 test {name}")
    return os.path.join(TMP, f"{name}.pem")


def make_cert(name, ca, sans, cn="localhost"):
    """A server certificate signed by `ca` for the names `sans` (DNS:..., IP:...)."""
    with open(os.path.join(TMP, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-set_serial",
            str(random.randrange(1, 1 << 60)), "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return os.path.join(TMP, f"{name}.pem"), os.path.join(TMP, f"{name}.key")


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# ------------------------------------------------------------------ servers

class Server(serving.Server):
    """`ws6455 serve --port 0 --tls-cert CERT --tls-key KEY ARGS`, its stderr in TMP;
    stop() is a SIGTERM (killed after 10 s)."""

    def __init__(self, args, cert, key):
        super().__init__(BIN, "--tls-cert", cert, "--tls-key", key, *args,
                         log=os.path.join(TMP, f"serve-{len(serving.PROCS)}.err"))

    def stderr(self):
        return self.output()

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self, sig=signal.SIGTERM, timeout=10):
        return super().stop(sig, timeout)


def client_ctx(ca):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx


# ------------------------------------------------------------------ messages

SIZES = [0, 1, 125, 126, 65535, 65536, 100_000, 1 << 20, 4 << 20]
MESSAGES = sized_messages(SIZES)


def describe(m):
    return f"{'text' if isinstance(m, str) else 'binary'} {len(m.encode()) if isinstance(m, str) else len(m)} B"


# ------------------------------------------------------------------ Python client -> our server

async def py_echo(url, ca, compression, pipelined):
    ctx = client_ctx(ca)
    async with websockets.connect(url, ssl=ctx, server_hostname="localhost", compression=compression,
                                  max_size=None, ping_interval=None, open_timeout=10, close_timeout=5) as ws:
        ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        if pipelined:
            async def send_all():
                for m in MESSAGES:
                    await ws.send(m)
            sender = asyncio.create_task(send_all())
            for m in MESSAGES:
                got = await asyncio.wait_for(ws.recv(), 30)
                if got != m:
                    return f"{describe(m)} came back as {describe(got)}", ext
            await sender
        else:
            for m in MESSAGES:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 30)
                if got != m:
                    return f"{describe(m)} came back as {describe(got)}", ext
        await ws.close(1000, "done")
        return None, ext


def test_python_client(variant, ca, cert, key):
    tag = " ".join(variant)
    for deflate in (False, True):
        srv = Server(variant + (["--deflate"] if deflate else []), cert, key)
        try:
            for pipelined in (False, True):
                t0 = time.monotonic()
                err, ext = asyncio.run(asyncio.wait_for(
                    py_echo(srv.url, ca, "deflate" if deflate else None, pipelined), 120))
                name = (f"[{tag}] websockets over TLS{' + deflate' if deflate else ''}: {len(MESSAGES)} messages "
                        f"0 B..4 MiB echoed ({'pipelined' if pipelined else 'one by one'}, "
                        f"{time.monotonic() - t0:.1f} s)")
                check(name, err is None and (("permessage-deflate" in ext) == deflate), f"{err} ext={ext!r}")
        finally:
            srv.stop()


# ------------------------------------------------------------------ Python server <- ws6455 connect

class PyTLSServer(serving.ThreadedWSServer):
    """websockets.serve over ssl on 127.0.0.1:0 in a thread; it sends MESSAGES, expects them back, closes."""

    def __init__(self, cert, key, compression):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        super().__init__(self._handler, "the Python TLS server", ssl=ctx, compression=compression, max_size=None,
                         ping_interval=None, close_timeout=5)

    async def _handler(self, ws):
        res = {"error": None, "echoed": 0, "extensions": [e.name for e in ws.extensions]}
        try:
            for m in MESSAGES:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 30)
                if got != m:
                    res["error"] = f"{describe(m)} came back as {describe(got)}"
                    break
                res["echoed"] += 1
            await ws.close(1000, "done")
        except Exception as e:  # noqa: BLE001
            res["error"] = f"{type(e).__name__}: {e}"
        self.put(ws.path, res)

    def result(self, path, timeout=60):
        return super().result(path, timeout)


def connect(args, timeout=120):
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "connect", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        rc = None
    return rc, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - t0


def test_connect_client(backend, ca, cert, key):
    n = 0
    for deflate in (False, True):
        srv = PyTLSServer(cert, key, "deflate" if deflate else None)
        try:
            for host in ("127.0.0.1", "localhost"):
                n += 1
                path = f"/echo/{n}"
                args = [f"wss://{host}:{srv.port}{path}", "--echo", "--ca", ca, "--backend", backend]
                rc, out, err, secs = connect(args + (["--deflate"] if deflate else []))
                res = srv.result(path) or {"error": "no result", "echoed": 0, "extensions": []}
                check(f"[{backend}] connect --echo wss://{host}{' --deflate' if deflate else ''} against websockets "
                      f"over TLS: {len(MESSAGES)} messages 0 B..4 MiB ({secs:.1f} s)",
                      rc == 0 and res["error"] is None and res["echoed"] == len(MESSAGES) and
                      (("permessage-deflate" in res["extensions"]) == deflate),
                      f"rc={rc} res={res} stderr={short(err)}")
        finally:
            srv.stop()


def ssl_server_once(cert, key, session=None, version=None):
    """A Python ssl server on 127.0.0.1 for one connection, on a thread (TLS `version`
    only when given). outcome["handshake"] says how the server's handshake ended
    ("completed", or the exception text); then session(tls_socket, outcome) runs.
    Returns (port, thread, outcome); join the thread before reading outcome."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if version:
        ctx.minimum_version = ctx.maximum_version = version
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    outcome = {}

    def serve():
        try:
            lsock.settimeout(20)
            raw_conn, _ = lsock.accept()
            raw_conn.settimeout(10)
            try:
                t = ctx.wrap_socket(raw_conn, server_side=True, suppress_ragged_eofs=False)
            except (ssl.SSLError, OSError) as e:
                outcome["handshake"] = f"{type(e).__name__}: {e}"
                raw_conn.close()
                return
            outcome["handshake"] = "completed"
            with t:
                if session:
                    session(t, outcome)
        except Exception as e:  # noqa: BLE001
            outcome["error"] = f"{type(e).__name__}: {e}"
        finally:
            lsock.close()

    th = threading.Thread(target=serve)
    th.start()
    return port, th, outcome


def test_client_close_notify(backend, ca, cert, key):
    """After a clean WebSocket close our client ends TLS with close_notify (RFC 8446
    §6.1): a raw ssl server closes the WebSocket, reads the client's close reply, then
    sees a clean TLS end (recv returns b""), not an EOF without close_notify."""
    import base64
    import hashlib

    def session(t, outcome):
        head = b""
        while b"\r\n\r\n" not in head:
            head += t.recv(4096)
        key_line = [l for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1(key_line.split(b":", 1)[1].strip() +
                                               b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        t.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        t.sendall(b"\x88\x02\x03\xe8")  # close 1000
        reply = t.recv(64)  # the client's masked close (6 + 2 bytes)
        outcome["reply"] = reply[:1] == b"\x88"
        try:
            outcome["after"] = t.recv(64)  # b"": close_notify came
        except ssl.SSLError as e:
            outcome["after"] = f"{type(e).__name__}: {e}"

    port, th, outcome = ssl_server_once(cert, key, session)
    rc, out, err, secs = connect([f"wss://127.0.0.1:{port}/", "--ca", ca, "--backend", backend], timeout=30)
    th.join(30)
    # At once: not after the close timeout (5 s), when the connection is torn down anyway.
    check(f"[{backend}] connect wss://: a clean close ends TLS with close_notify at once ({secs:.1f} s)",
          outcome.get("reply") is True and outcome.get("after") == b"" and rc == 0 and secs < 3,
          f"{outcome} rc={rc} err={short(err)}")


def test_resumption(backend, ca, cert, key):
    """Session tickets: a second connection presenting the first one's session resumes
    it (no certificate exchange), over TLS 1.3 and 1.2."""
    srv = Server(["--backend", backend], cert, key)
    try:
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = ssl.create_default_context(cafile=ca)
            ctx.minimum_version = ctx.maximum_version = version
            session, reused = None, []
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw_sock:
                    with ctx.wrap_socket(raw_sock, server_hostname="localhost", session=session) as t:
                        t.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  b"Sec-WebSocket-Version: 13\r\n\r\n")
                        head = t.recv(4096)  # the 101 (TLS 1.3 tickets come with or before it)
                        reused.append(t.session_reused and head.startswith(b"HTTP/1.1 101"))
                        session = t.session
            check(f"[{backend}] {version.name}: a second connection resumes the first one's session",
                  reused == [False, True], f"{reused}")
    finally:
        srv.stop()


def test_sni(backend, ca, cert, key, other_cert, other_key):
    """SNI (RFC 6066 §3): --tls-sni serves its certificate to clients asking for its
    name; the others get the default one."""
    srv = Server(["--backend", backend, "--tls-sni", f"{other_cert},{other_key}"], cert, key)
    try:
        seen = {}
        for name in ("other.example", "localhost"):
            ctx = ssl.create_default_context(cafile=ca)
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw_sock:
                with ctx.wrap_socket(raw_sock, server_hostname=name) as t:  # verifies name and chain
                    seen[name] = t.getpeercert()["subject"]
        check(f"[{backend}] SNI: each name gets its own certificate",
              "other.example" in str(seen.get("other.example")) and "localhost" in str(seen.get("localhost")),
              f"{seen}")
    finally:
        srv.stop()


def test_client_errors(backend, ca, cert, key, other_cert, other_key):
    srv = Server(["--backend", backend], cert, key)
    wrong = Server(["--backend", backend], other_cert, other_key)  # a certificate for other.example
    try:
        rc, out, err, _ = connect([f"wss://localhost:{wrong.port}/", "--ca", ca, "--backend", backend], timeout=20)
        check(f"[{backend}] connect: hostname mismatch fails with the reason",
              rc == 1 and "hostname mismatch" in err.lower(), f"rc={rc} stderr={short(err)}")
        rc, out, err, _ = connect([f"wss://localhost:{srv.port}/", "--backend", backend], timeout=20)
        check(f"[{backend}] connect: an untrusted CA (the system store) fails with the reason",
              rc == 1 and "certificate verify failed" in err and "issuer" in err, f"rc={rc} stderr={short(err)}")
        rc, out, err, _ = connect([f"wss://localhost:{wrong.port}/", "--insecure", "--backend", backend,
                                   "--close-after-stdin"], timeout=20)
        check(f"[{backend}] connect --insecure accepts any certificate",
              rc == 0, f"rc={rc} stderr={short(err)}")
        rc, out, err, _ = connect([f"wss://localhost:{srv.port}/", "--ca", "/nonexistent/ca.pem"], timeout=20)
        check(f"[{backend}] connect: an unreadable --ca file is an error", rc == 1 and "CA file" in err,
              f"rc={rc} stderr={short(err)}")
        rc, out, err, _ = connect([f"ws://127.0.0.1:{srv.port}/", "--backend", backend], timeout=20)
        check(f"[{backend}] connect ws:// to the TLS port fails (400), the server says why",
              rc == 1 and "400" in err, f"rc={rc} stderr={short(err)}")
    finally:
        srv.stop()
        wrong.stop()


def test_client_alert(backend, ca, cert, key, other_cert, other_key):
    """A client whose verification fails says why with a fatal alert before it closes
    (RFC 8446 §6.2, RFC 5246 §7.2.2): the server's handshake then fails naming the
    alert, not with an EOF. Bounded: the client does not wait for the server."""
    other_ca = os.path.join(TMP, "other_ca.pem")
    tls13, tls12 = ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2
    cases = [
        # A chain to a CA the client does not trust: unknown_ca (RFC 8446 §6.2).
        ("an untrusted CA", cert, key, ["--ca", other_ca], tls13, "unknown ca"),
        ("an untrusted CA", cert, key, ["--ca", other_ca], tls12, "unknown ca"),
        # A trusted certificate for another name (RFC 6125): bad_certificate.
        ("a hostname mismatch", other_cert, other_key, ["--ca", ca], tls13, "bad certificate"),
    ]
    for what, c, k, args, version, alert in cases:
        port, th, outcome = ssl_server_once(c, k, version=version)
        rc, out, err, secs = connect([f"wss://localhost:{port}/", "--backend", backend, *args], timeout=30)
        th.join(30)
        seen = outcome.get("handshake", f"no handshake: {outcome}")
        check(f"[{backend}] connect over {version.name}: {what} is told to the server with an alert "
              f"({alert}), not a bare close ({secs:.1f} s)",
              rc == 1 and "certificate verify failed" in err and alert in seen.lower() and secs < 5,
              f"server: {seen}; rc={rc} stderr={short(err)}")


# ------------------------------------------------------------------ Node ws

NODE_CLIENT = r"""
const WebSocket = require('ws');
const fs = require('fs');
const [url, ca, deflate] = process.argv.slice(2);
const sizes = [0, 1, 125, 126, 65536, 1 << 20, 4 << 20];
const msgs = [];
for (const n of sizes) { msgs.push('x'.repeat(n)); msgs.push(Buffer.alloc(n, 7)); }
const ws = new WebSocket(url, {ca: fs.readFileSync(ca), servername: 'localhost',
                               perMessageDeflate: deflate === 'deflate', maxPayload: 64 << 20});
let i = 0;
const timer = setTimeout(() => { console.log('timeout at ' + i); process.exit(1); }, 60000);
ws.on('open', () => ws.send(msgs[0]));
ws.on('message', (data, isBinary) => {
  const m = msgs[i];
  const same = typeof m === 'string' ? !isBinary && data.toString() === m : isBinary && Buffer.compare(m, data) === 0;
  if (!same) { console.log('mismatch at ' + i); process.exit(1); }
  if (++i === msgs.length) ws.close(1000, 'done'); else ws.send(msgs[i]);
});
ws.on('close', (code) => { clearTimeout(timer); console.log(JSON.stringify({code, echoed: i, extensions: ws.extensions})); });
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
"""


def node_modules():
    return node_ws_modules(lambda why: print(f"skip Node ws over wss: {why}"))


def test_node(variant, ca, cert, key, modules):
    tag = " ".join(variant)
    script = os.path.join(TMP, "node_client.js")
    with open(script, "w") as f:
        f.write(NODE_CLIENT)
    for deflate in (False, True):
        srv = Server(variant + (["--deflate"] if deflate else []), cert, key)
        try:
            r = subprocess.run(["node", script, srv.url + "/", ca, "deflate" if deflate else "plain"],
                               capture_output=True, text=True, timeout=90, env={**os.environ, "NODE_PATH": modules})
            line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
            try:
                res = json.loads(line)
            except ValueError:
                res = {}
            check(f"[{tag}] Node ws over wss{' + deflate' if deflate else ''}: 14 messages 0 B..4 MiB echoed",
                  res.get("code") == 1000 and res.get("echoed") == 14 and
                  (("permessage-deflate" in res.get("extensions", "")) == deflate),
                  f"stdout={short(r.stdout)} stderr={short(r.stderr)}")
        finally:
            srv.stop()


# ------------------------------------------------------------------ hostile clients

def raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


def closed_within(s, seconds):
    """True if the peer closes (EOF or reset) within `seconds`; reads and drops what comes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            continue
        try:
            if not s.recv(65536):
                return True
        except (ConnectionResetError, OSError):
            return True
    return False


def client_hello():
    """The first flight of a real TLS client, made with a memory BIO."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class MemTLS:
    """A TLS client over a raw socket, driven by hand (for truncated and corrupted records)."""

    def __init__(self, port, ca):
        self.sock = raw(port)
        ctx = client_ctx(ca)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        deadline = time.monotonic() + 10
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                if time.monotonic() > deadline:
                    raise RuntimeError("handshake timed out")
                data = self.sock.recv(65536)
                if not data:
                    raise RuntimeError("closed during the handshake")
                self.inc.write(data)
        self.sock.sendall(self.out.read())

    def records(self, data):
        self.obj.write(data)
        return self.out.read()

    def read_some(self, timeout=5):
        deadline = time.monotonic() + timeout
        got = b""
        while time.monotonic() < deadline:
            try:
                got += self.obj.read(65536)
                return got
            except ssl.SSLWantReadError:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if r:
                    d = self.sock.recv(65536)
                    if not d:
                        return got
                    self.inc.write(d)
        return got


UPGRADE = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def quick_echo(srv, ca):
    async def go():
        async with websockets.connect(srv.url, ssl=client_ctx(ca), server_hostname="localhost", open_timeout=10,
                                      ping_interval=None) as ws:
            await ws.send("still there?")
            return await asyncio.wait_for(ws.recv(), 10)
    return asyncio.run(asyncio.wait_for(go(), 20)) == "still there?"


def hostile_round(srv, ca, hello):
    """One of each hostile client that ends quickly. Returns the failures (names)."""
    bad = []
    s = raw(srv.port)  # garbage instead of a ClientHello
    s.sendall(bytes([0x16, 0x03, 0x01, 0x00, 0x10]) + os.urandom(16))
    if not closed_within(s, 5):
        bad.append("garbage ClientHello not closed")
    s.close()
    s = raw(srv.port)  # plain HTTP on the TLS port
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            d = s.recv(65536)
            if not d:
                break
            got += d
    if not got.startswith(b"HTTP/1.1 400") or b"TLS" not in got:
        bad.append(f"plain HTTP got {got[:80]!r}")
    s.close()
    t = MemTLS(srv.port, ca)  # a truncated record, then FIN
    t.sock.sendall(t.records(UPGRADE))
    if b"101" not in t.read_some():
        bad.append("no 101 over TLS")
    rec = t.records(b"\x81\x85abcd" + bytes(5))
    t.sock.sendall(rec[: len(rec) // 2])
    t.sock.shutdown(socket.SHUT_WR)
    if not closed_within(t.sock, 8):
        bad.append("truncated record: not closed")
    t.sock.close()
    t = MemTLS(srv.port, ca)  # a corrupted record (bad tag): bad_record_mac, then closed
    t.sock.sendall(t.records(UPGRADE))
    t.read_some()
    rec = bytearray(t.records(b"\x81\x85abcd" + bytes(5)))
    rec[-1] ^= 0xFF
    t.sock.sendall(bytes(rec))
    try:  # RFC 8446 §6.2: the alert before the close, not a bare EOF
        t.read_some()
        bad.append("corrupted record: closed without a bad_record_mac alert")
    except ssl.SSLError as e:
        if "bad record mac" not in str(e).lower():
            bad.append(f"corrupted record: {e}")
    if not closed_within(t.sock, 8):
        bad.append("corrupted record: not closed")
    t.sock.close()
    s = raw(srv.port)  # a handshake that stops half way: dropped at the handshake timeout
    s.sendall(hello[: len(hello) // 2])
    if not closed_within(s, 6):
        bad.append("half a ClientHello: not dropped")
    s.close()
    return bad


def test_hostile(variant, ca, cert, key):
    tag = " ".join(variant)
    srv = Server(variant + ["--handshake-timeout", "1.5", "--close-timeout", "2"], cert, key)
    hello = client_hello()
    try:
        bad = hostile_round(srv, ca, hello)
        check(f"[{tag}] hostile TLS clients: garbage, plain HTTP (400), truncated and corrupted records, "
              f"half a handshake: each closed", not bad and srv.alive(), f"{bad}")
        log = srv.stderr()
        check(f"[{tag}] the plain HTTP request and the failed handshake are logged",
              "plain HTTP request on the TLS port" in log and "handshake failed" in log, short(log))
        # One byte a second: dropped at the handshake timeout (1.5 s), not after the whole hello.
        s = raw(srv.port)
        t0 = time.monotonic()
        dropped = None
        for b in hello[:10]:
            try:
                s.sendall(bytes([b]))
            except OSError:
                dropped = time.monotonic() - t0
                break
            if closed_within(s, 1.0):
                dropped = time.monotonic() - t0
                break
        s.close()
        check(f"[{tag}] a ClientHello at one byte a second is dropped at the handshake timeout",
              dropped is not None and dropped < 5, f"dropped after {dropped}")
        # TLS 1.2 renegotiation (client-initiated): refused, the server goes on.
        ren = None
        if shutil.which("openssl"):
            p = subprocess.Popen(["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{srv.port}",
                                  "-CAfile", ca, "-servername", "localhost"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)
                p.stdin.write(b"R\n")
                p.stdin.flush()
                time.sleep(1.0)
                out, _ = p.communicate(b"", timeout=10)  # EOF: s_client ends
                ren = out.decode(errors="replace")
            except (subprocess.TimeoutExpired, BrokenPipeError):
                p.kill()
                p.communicate()
        check(f"[{tag}] a TLS 1.2 renegotiation attempt is refused and the server keeps serving",
              ren is not None and "RENEGOTIATING" in ren and srv.alive() and quick_echo(srv, ca),
              short(ren or "no s_client output"))
        # Leaks: rounds of the above, then fds and RSS against a warmed-up baseline.
        for _ in range(2):
            hostile_round(srv, ca, hello)
        time.sleep(0.5)
        fds0, rss0 = srv.fds(), srv.rss_kib()
        bad = []
        for _ in range(6):
            bad += hostile_round(srv, ca, hello)
        time.sleep(0.5)
        fds1, rss1 = srv.fds(), srv.rss_kib()
        check(f"[{tag}] after 6 more rounds: still serving, no fd or memory growth "
              f"(fds {fds0} -> {fds1}, RSS {rss0} -> {rss1} KiB)",
              not bad and srv.alive() and quick_echo(srv, ca) and fds1 <= fds0 and rss1 - rss0 < RSS_SLACK_KIB, f"{bad}")
    finally:
        srv.stop()


# ------------------------------------------------------------------ SIGHUP reload

def peer_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def test_reload(backend, ca):
    live_cert, live_key = os.path.join(TMP, "live.pem"), os.path.join(TMP, "live.key")
    a_cert, a_key = make_cert("reload_a", "ca", ["DNS:localhost", "IP:127.0.0.1"])
    b_cert, b_key = make_cert("reload_b", "ca", ["DNS:localhost", "IP:127.0.0.1"], cn="localhost reloaded")
    shutil.copy(a_cert, live_cert)
    shutil.copy(a_key, live_key)
    srv = Server(["--backend", backend, "--threads", "2"], live_cert, live_key)

    async def scenario():
        async with websockets.connect(srv.url, ssl=client_ctx(ca), server_hostname="localhost",
                                      ping_interval=None, open_timeout=10) as old:
            await old.send("before")
            first = await asyncio.wait_for(old.recv(), 10)
            before = await asyncio.to_thread(peer_cert, srv.port)
            shutil.copy(b_cert, live_cert)
            shutil.copy(b_key, live_key)
            srv.proc.send_signal(signal.SIGHUP)
            after = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                after = await asyncio.to_thread(peer_cert, srv.port)
                if after == der_of(b_cert):
                    break
                await asyncio.sleep(0.1)
            await old.send("after")
            second = await asyncio.wait_for(old.recv(), 10)
            return first, second, before, after
    try:
        first, second, before, after = asyncio.run(asyncio.wait_for(scenario(), 40))
        check(f"[{backend}] SIGHUP: new connections get the new certificate",
              before == der_of(a_cert) and after == der_of(b_cert), short(srv.stderr()))
        check(f"[{backend}] SIGHUP: the connection opened before still echoes",
              first == "before" and second == "after", f"{first!r} {second!r}")
        # A broken pair of files: the reload fails, the old certificate stays.
        with open(live_key, "w") as f:
            f.write("not a key\n")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "reload failed" not in srv.stderr():
            time.sleep(0.1)
        check(f"[{backend}] SIGHUP with a bad key: reload refused, the server keeps its certificate",
              "reload failed" in srv.stderr() and peer_cert(srv.port) == der_of(b_cert), short(srv.stderr()))
    finally:
        srv.stop()


# ------------------------------------------------------------------ Chromium

def test_chromium(backend, cert, key):
    node = shutil.which("node")
    chromium = os.environ.get("WS6455_CHROMIUM", "/usr/bin/chromium")
    modules = next((p for p in (os.environ.get("WS6455_NODE_MODULES"), "/tmp/ws6455-browser/node_modules")
                    if p and os.path.isfile(os.path.join(p, "playwright-core", "package.json"))), None)
    if not node or not os.access(chromium, os.X_OK) or not modules:
        print("skip Chromium over https + wss: needs node, Chromium and playwright-core (see tests/test_browser.py)")
        return
    srv = Server(["--backend", backend], cert, key)
    try:
        env = dict(os.environ, WS6455_NODE_MODULES=modules, WS6455_CHROMIUM=chromium, TMPDIR=TMP)
        p = subprocess.Popen([node, os.path.join(HERE, "browser", "tls.mjs"), f"https://127.0.0.1:{srv.port}/"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
        text = out.decode(errors="replace")
        check(f"[{backend}] Chromium loads the page over https and echoes over wss",
              p.returncode == 0 and "ok wss" in text, short(text, 800))
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass
        srv.stop()


# ------------------------------------------------------------------ main

def test_load(backend, ca, cert, key):
    """ws6455 load over wss:// (the client adapter's TLS), every echo checked; and the
    same against plain ws:// in the same run, for the ratio (printed, not asserted)."""
    rates = {}
    for tls in (True, False):
        args = ["--backend", backend]
        if tls:
            srv = Server(args, cert, key)
        else:
            srv = None
            p = subprocess.Popen([BIN, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            if tls:
                url = srv.url + "/"
            else:
                m = re.match(rb"listening on ws://127\.0\.0\.1:(\d+)/", p.stdout.readline())
                url = f"ws://127.0.0.1:{int(m.group(1))}/"
            r = subprocess.run([BIN, "load", url, "--ca", ca, "-c", "16", "-p", "4", "-s", "4096", "-t", "1", "--json",
                                "--backend", backend], capture_output=True, text=True, timeout=60)
            res = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
            ok = r.returncode == 0 and res.get("errors") == 0 and res.get("msgs_per_s", 0) > 0
            check(f"[{backend}] load {'wss' if tls else 'ws'}:// c=16 p=4 4 KiB: every echo checked, no error", ok,
                  f"rc={r.returncode} {short(r.stdout)} {short(r.stderr)}")
            rates[tls] = res.get("msgs_per_s", 0)
        finally:
            if srv:
                srv.stop()
            else:
                p.kill()
                p.wait()
    if rates.get(False):
        print(f"# [{backend}] wss/ws msgs/s at c=16 p=4 4 KiB (client and server on one machine): "
              f"{rates.get(True, 0) / rates[False]:.2f}")


def main():
    if not shutil.which("openssl"):
        print("skip: no openssl command")
        return 77
    ca = make_ca("ca")
    make_ca("other_ca")
    cert, key = make_cert("server", "ca", ["DNS:localhost", "IP:127.0.0.1"])
    other_cert, other_key = make_cert("other", "ca", ["DNS:other.example"], cn="other.example")
    for variant in VARIANTS:
        tag = " ".join(variant)
        run_check(f"[{tag}] Python websockets client over TLS", test_python_client, variant, ca, cert, key)
    for backend in ("epoll", "io_uring"):
        run_check(f"[{backend}] connect wss:// against websockets", test_connect_client, backend, ca, cert, key)
        run_check(f"[{backend}] connect errors", test_client_errors, backend, ca, cert, key, other_cert, other_key)
        run_check(f"[{backend}] alerts on a failed verification", test_client_alert, backend, ca, cert, key,
                  other_cert, other_key)
        run_check(f"[{backend}] close_notify", test_client_close_notify, backend, ca, cert, key)
        run_check(f"[{backend}] session resumption", test_resumption, backend, ca, cert, key)
        run_check(f"[{backend}] SNI", test_sni, backend, ca, cert, key, other_cert, other_key)
    modules = node_modules()
    if modules:
        for variant in (VARIANTS[0], VARIANTS[2]):
            run_check(f"[{' '.join(variant)}] Node ws over wss", test_node, variant, ca, cert, key, modules)
    for variant in (VARIANTS[0], VARIANTS[1], VARIANTS[2]):
        run_check(f"[{' '.join(variant)}] hostile", test_hostile, variant, ca, cert, key)
    for backend in ("epoll", "io_uring"):
        run_check(f"[{backend}] SIGHUP reload", test_reload, backend, ca)
    run_check("[io_uring] Chromium over https + wss", test_chromium, "io_uring", cert, key)
    for backend in ("epoll", "io_uring"):
        run_check(f"[{backend}] load wss://", test_load, backend, ca, cert, key)
    return summary()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        serving.stop_all()
        shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(rc)
