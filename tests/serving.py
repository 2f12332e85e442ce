"""What the suites that start processes share: `ws6455 serve` started on a port the
kernel picks (its URL read from the announcement on its first stdout line),
redis-server on a free port with a raw RESP connection to it, a plain HTTP GET,
RSS, stopping every process started whatever happened, and the chat protocol's
client (a reader task files every message as it arrives).

Every process started here is kept in PROCS; a suite's `finally` calls stop_all().
Standard library only at import (websockets is imported by the chat client).
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import checks
from checks import check, first_line

PROCS = []  # every Proc started, for stop_all()


# ------------------------------------------------------------------ small helpers

def free_port():
    """A port nobody listens on (the kernel's pick, closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_program(name, *fallbacks):
    """The path of `name` on PATH, or the first executable fallback; None if neither."""
    for p in (shutil.which(name), *fallbacks):
        if p and os.access(p, os.X_OK):
            return p
    return None


def rss_kib(pid):
    """VmRSS of `pid` in KiB; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n")


def http_get(port, path, timeout=5, headers="Connection: close\r\n"):
    """A plain HTTP/1.1 GET to 127.0.0.1:port with `headers` (lines ending in CRLF;
    UPGRADE makes it a WebSocket upgrade); returns (status line, headers text, body
    bytes). Reads until Content-Length is satisfied, a 101's head, or the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and ((m and len(body) >= int(m.group(1))) or head.startswith(b"HTTP/1.1 101 ")):
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, _, headers = head.decode("latin-1").partition("\r\n")
    return status, headers, body


# ------------------------------------------------------------------ processes

class Proc:
    """A started process. Its stderr (and its stdout, unless `stdout` is given) goes to
    the file `log`, appended to and kept, or to an anonymous temporary file: never to a
    pipe nobody reads, which would stall a process that logs a lot."""

    def __init__(self, argv, name=None, log=None, stdout=None, env=None):
        self.name = name or os.path.basename(argv[0])
        self.log = log
        self._log = open(log, "a+b") if log else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=stdout if stdout is not None else self._log, stderr=self._log, env=env)
        PROCS.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGKILL, timeout=10):
        """Sends `sig` (if still running), waits up to `timeout`, kills if still there.
        The exit status (negative: the signal that ended it), or "killed after timeout"."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return "killed after timeout"

    def output(self):
        """Everything logged so far, as text (pread: the process' file offset stays)."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def log_tail(self, n=2000):
        return self.output()[-n:]


def stop_all(timeout=5):
    """Kills every process started here that still runs; returns the names of any that
    would not go."""
    for p in PROCS:
        if p.alive():
            p.stop(signal.SIGKILL, timeout=timeout)
    return [p.name for p in PROCS if p.alive()]


def finish(t_start, tmp=None):
    """The end of a suite's run: kills what is left (a failed check if anything was),
    says how long the run took, and removes `tmp` unless a check failed (its logs are
    then kept, and named)."""
    left = stop_all()
    check("no process left behind", not left, repr(left))
    took = f"the whole run: {time.monotonic() - t_start:.1f} s"
    if checks.FAILED and tmp:
        print(f"     ({took}; logs kept in {tmp})")
    else:
        print(f"     ({took})")
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


LISTENING = re.compile(rb"listening on (wss?)://127\.0\.0\.1:(\d+)/\n")


class Listener(Proc):
    """A started process that announces `listening on ws[s]://127.0.0.1:PORT/` on its
    first stdout line: `port`, and `url` (ws[s]://127.0.0.1:PORT, no slash)."""

    def __init__(self, argv, name, log=None, env=None):
        super().__init__(argv, name=name, log=log, stdout=subprocess.PIPE, env=env)
        line = first_line(self.proc)
        m = LISTENING.match(line)
        if not m:
            self.stop()
            raise RuntimeError(f"{name} did not start: {line!r} {self.log_tail()!r}")
        self.port = int(m.group(2))
        self.url = f"{m.group(1).decode()}://127.0.0.1:{self.port}"

    def rss_kib(self):
        return rss_kib(self.pid)


class Server(Listener):
    """`BINARY serve --port 0 ARGS`, started."""

    def __init__(self, binary, *args, env=None, log=None, name="ws6455 serve"):
        super().__init__([binary, "serve", "--port", "0", *args], name, log=log, env=env)

    def stats(self, timeout=5):
        """GET /stats (chat mode), parsed."""
        status, _, body = http_get(self.port, "/stats", timeout)
        if not status.startswith("HTTP/1.1 200"):
            raise RuntimeError(f"GET /stats on {self.name}: {status}")
        return json.loads(body)

    async def astats(self):
        return await asyncio.to_thread(self.stats)

    def wait_stats(self, pred, timeout, interval=0.1):
        """Polls GET /stats until pred(stats) holds or `timeout` passed; the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if pred(st) or time.monotonic() > deadline:
                return st
            time.sleep(interval)

    async def wait_redis(self, connected, timeout):
        """Until /stats' redis.connected is `connected` (bounded); the last stats."""
        return await asyncio.to_thread(self.wait_stats, lambda st: st["redis"]["connected"] is connected, timeout)


# ------------------------------------------------------------------ Redis

class RedisError(Exception):
    """An error reply (returned, not raised, by RedisConn.reply)."""


class RedisConn:
    """One raw RESP connection to 127.0.0.1:port (AUTH first if `password`)."""

    def __init__(self, port, password=None, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if password is not None:
            r = self.call("AUTH", password)
            if isinstance(r, RedisError):
                self.close()
                raise r

    def send(self, *args):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.sock.sendall(out)

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from Redis in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply from Redis in time") from None
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buf += chunk

    def reply(self, timeout=5):
        """The next reply: str (status), int, bytes or None (bulk), list, or RedisError.
        TimeoutError if none came within `timeout`."""
        return self._reply(time.monotonic() + timeout)

    def _reply(self, deadline):
        line = self._line(deadline)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill(deadline)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply(deadline) for _ in range(n)]
        raise ConnectionError(f"not RESP: {line[:80]!r}")

    def call(self, *args, timeout=5):
        self.send(*args)
        return self.reply(timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def redis_exe():
    return find_program("redis-server", "/usr/bin/redis-server")


class Redis(Proc):
    """redis-server on 127.0.0.1 (a free port unless `port`), nothing saved, its log in
    `dir` (default: a temporary directory); started once it answers."""

    def __init__(self, port=None, *args, password=None, dir=None, exe=None, name="redis-server"):
        self.port = port or free_port()
        self.password = password
        self.dir = dir or tempfile.mkdtemp(prefix="ws6455-redis-")
        argv = [exe or redis_exe(), "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind",
                "127.0.0.1", "--daemonize", "no", "--dir", self.dir, *args]
        if password is not None:
            argv += ["--requirepass", password]
        super().__init__(argv, name=name, log=os.path.join(self.dir, f"redis-{self.port}.log"))
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"redis-server did not start on {self.port}: {tail}")

    def ping(self, timeout=1.0):
        """Whether it answers (a PONG, or NOAUTH when it wants a password)."""
        try:
            with RedisConn(self.port, timeout=timeout) as c:
                r = c.call("PING", timeout=timeout)
                return r == "PONG" or (isinstance(r, RedisError) and str(r).startswith("NOAUTH"))
        except (OSError, TimeoutError, ConnectionError):
            return False

    def url(self, password=None):
        """redis://[:PASSWORD@]127.0.0.1:PORT, with its own password unless another is given."""
        pw = self.password if password is None else password
        return f"redis://{':' + pw + '@' if pw else ''}127.0.0.1:{self.port}"

    def connect(self, timeout=5):
        return RedisConn(self.port, self.password, timeout)

    def call(self, *args, timeout=5):
        """One command on a connection of its own."""
        with self.connect(timeout) as c:
            return c.call(*args, timeout=timeout)


# ------------------------------------------------------------------ the chat protocol's client

class ChatClient:
    """A chat client (docs/chat.md); a reader task files every message as it arrives.
    Chat contents are "TAG|SENDER|SEQ|SENT_NS|padding"; per tag, `chats` keeps
    (room, from, sender, seq, id, received_ns, sent_ns)."""

    def __init__(self, name, rooms=()):
        self.name = name
        self.rooms = set(rooms)
        self.ws = None
        self.welcome = None
        self.instance = None
        self.log = []      # every message but chats
        self.chats = {}    # tag -> [...]
        self.bad = []      # chats whose content is not ours
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()
        self.task = None

    async def open(self, url, timeout=15):
        import websockets
        self.ws = await asyncio.wait_for(
            websockets.connect(url, ping_interval=None, max_size=None, compression=None, open_timeout=timeout),
            timeout)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.instance = self.welcome.get("instance")
        self.task = asyncio.ensure_future(self.reader())
        return self

    async def reader(self):
        import websockets
        try:
            async for raw in self.ws:
                now = time.perf_counter_ns()
                m = json.loads(raw)
                if m.get("type") == "chat":
                    parts = str(m.get("content", "")).split("|", 4)
                    if len(parts) == 5:
                        self.chats.setdefault(parts[0], []).append(
                            (m.get("room"), m.get("from"), parts[1], int(parts[2]), json.dumps(m.get("id")), now,
                             int(parts[3])))
                    else:
                        self.bad.append(m)
                else:
                    self.log.append(m)
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.ended.set()
            self.changed.set()

    async def wait(self, pred, timeout):
        """Until pred() holds or the connection ended or `timeout` passed; returns pred()."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred():
            if self.ended.is_set() or loop.time() >= end:
                return pred()
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), end - loop.time())
            except asyncio.TimeoutError:
                pass
        return True

    def has(self, **kv):
        return any(all(m.get(k) == v for k, v in kv.items()) for m in self.log)

    def joined(self, room):
        """Its own joined of `room` came, then its members naming it."""
        return self.has(type="joined", room=room, who=self.name) and any(
            m.get("type") == "members" and m.get("room") == room and self.name in (m.get("who") or [])
            for m in self.log)

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def join(self, room, timeout=20):
        """Joins and waits for its own joined (then its members)."""
        await self.send({"type": "join", "room": room})
        return await self.wait(lambda: self.joined(room), timeout)

    async def chat(self, room, tag, seq, size=0):
        """Sends TAG|NAME|SEQ|NOW_NS|, padded to `size` bytes of content."""
        content = f"{tag}|{self.name}|{seq}|{time.perf_counter_ns()}|"
        content += "y" * max(0, size - len(content))
        await self.ws.send(json.dumps({"type": "chat", "room": room, "content": content}))

    def seqs(self, tag, sender=None):
        """The sequence numbers of `tag` received, in arrival order (of one sender)."""
        return [x[3] for x in self.chats.get(tag, []) if sender is None or x[2] == sender]

    async def close(self):
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except (asyncio.TimeoutError, OSError):
                pass
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing anyway
                pass


async def chat_round(tag, clients, per_sender, required=None, timeout=60):
    """Every client sends `per_sender` chats to its one room. `required(sender,
    receiver)` says who must get whose (default: every member of the room); anything
    else of the room may arrive at most once. Returns (problems, messages received)."""
    required = required or (lambda s, r: True)
    by_room = {}
    for c in clients:
        for room in c.rooms:
            by_room.setdefault(room, []).append(c)

    async def sender(c):
        (room,) = c.rooms
        for seq in range(per_sender):
            await c.chat(room, tag, seq)

    must = {c.name: {(s.name, seq) for room in c.rooms for s in by_room[room] if required(s, c)
                     for seq in range(per_sender)} for c in clients}
    may = {c.name: {(s.name, seq) for room in c.rooms for s in by_room[room] for seq in range(per_sender)}
           for c in clients}
    await asyncio.gather(*(sender(c) for c in clients))

    def done(c):
        return must[c.name] <= {(x[2], x[3]) for x in c.chats.get(tag, [])}
    await asyncio.gather(*(c.wait(lambda c=c: len(c.chats.get(tag, [])) >= len(must[c.name]) and done(c), timeout)
                           for c in clients))
    await asyncio.sleep(0.5)  # a duplicate, or another room's message, would arrive now
    problems = []
    received = 0
    ids = {}
    for c in clients:
        got = c.chats.get(tag, [])
        received += len(got)
        keys = [(x[2], x[3]) for x in got]
        last = {}
        for room, frm, snd, seq, mid, _, _ in got:
            if room not in c.rooms or frm != snd or (snd, seq) not in may[c.name]:
                problems.append(f"{c.name} got {snd}:{seq} of {room} (from {frm})")
                break
            if seq <= last.get(snd, -1):
                problems.append(f"{c.name}: {snd}:{seq} after {snd}:{last[snd]} (order)")
                break
            last[snd] = seq
            ids.setdefault((snd, seq), set()).add(mid)
        if len(keys) != len(set(keys)):
            problems.append(f"{c.name}: {len(keys) - len(set(keys))} duplicates")
        missing = must[c.name] - set(keys)
        if missing:
            problems.append(f"{c.name} ({c.instance}): {len(missing)} of {len(must[c.name])} missing, "
                            f"e.g. {sorted(missing)[:2]}")
        if c.bad:
            problems.append(f"{c.name}: foreign chats {c.bad[:2]}")
    if any(len(v) != 1 for v in ids.values()):
        problems.append("a message reached its members with different ids")
    all_ids = [next(iter(v)) for v in ids.values() if len(v) == 1]
    if len(all_ids) != len(set(all_ids)):
        problems.append("two messages share an id")
    return problems, received


def deliveries(clients, per_sender):
    """How many chats a round delivers when every member gets every message of its room."""
    sizes = {}
    for c in clients:
        for r in c.rooms:
            sizes[r] = sizes.get(r, 0) + 1
    return sum(n * n for n in sizes.values()) * per_sender


# ------------------------------------------------------------------ a websockets server in a thread

class ThreadedWSServer:
    """websockets.serve(handler, "127.0.0.1", 0, **serve_kwargs) on a thread of its own,
    so that blocking test code (a `ws6455 connect` subprocess) can run against it. A
    handler files what its connection saw with put(path, result); the test waits for
    it with result(path)."""

    def __init__(self, handler, what="the Python websockets server", **serve_kwargs):
        self.results = {}
        self.cond = threading.Condition()
        self.port = None
        self.loop = None
        self.stop_event = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready, handler, serve_kwargs), daemon=True)
        self.thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError(f"{what} did not start")

    def _run(self, ready, handler, serve_kwargs):
        import websockets

        async def main():
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            async with websockets.serve(handler, "127.0.0.1", 0, **serve_kwargs) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self.stop_event.wait()
        try:
            asyncio.run(main())
        finally:
            ready.set()

    def stop(self):
        if self.loop and self.stop_event:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)

    def put(self, path, result):
        with self.cond:
            self.results[path] = result
            self.cond.notify_all()

    def result(self, path, timeout=15):
        with self.cond:
            self.cond.wait_for(lambda: path in self.results, timeout)
            return self.results.get(path)
