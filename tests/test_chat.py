#!/usr/bin/python3
"""`ws6455 serve --mode chat` on one instance (no Redis): the JSON protocol of
docs/chat.md, row by row.

Usage: /usr/bin/python3 tests/test_chat.py path/to/ws6455 [serve options...]

The serve options after the binary (for example `--backend epoll --threads 2`) are
given to every server the suite starts. Clients: Python websockets (Debian's 10.4)
and raw sockets for the refused upgrade and GET /stats. Everything runs on
127.0.0.1 with ports the kernel picks (--port 0); every wait is bounded; servers
are killed at the end. Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import json
import os
import re
import signal
import sys

import websockets

from checks import check, run_check, runnable, summary
from serving import UPGRADE, Server, http_get, stop_all

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tools/ws6455"
SERVE_ARGS = sys.argv[2:]
QUIET = 0.4  # how long "nothing else arrives" is watched for, in seconds


def short(x, n=300):
    """repr(x), cut to n characters (a failed check's detail stays readable)."""
    r = repr(x)
    return r if len(r) <= n else r[:n] + f"... ({len(r)} chars)"


def chat_server(*args):
    """`ws6455 serve --mode chat --port 0 [suite options] [args]`, started."""
    return Server(BIN, "--mode", "chat", *SERVE_ARGS, *args)


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def upgrade_status(port, path, timeout=5):
    """The status line the server answers a WebSocket upgrade to `path` with."""
    return http_get(port, path, timeout, headers=UPGRADE)[0]


# ------------------------------------------------------------------ a JSON chat client

class Client:
    """One WebSocket with the chat protocol's JSON on top. `welcome` is the first
    message, read on connect."""

    def __init__(self, ws, welcome):
        self.ws = ws
        self.welcome = welcome
        self.name = welcome.get("name") if isinstance(welcome, dict) else None
        self.backlog = []  # read ahead by read_join, handed out first by recv

    async def send(self, obj):
        await self.ws.send(json.dumps(obj, ensure_ascii=False))

    async def send_raw(self, data):
        await self.ws.send(data)

    async def recv(self, timeout=5):
        if self.backlog:
            return self.backlog.pop(0)
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(f"{self.name}: no message within {timeout:.2f} s") from None
        if isinstance(raw, bytes):
            return {"type": "<binary>", "data": raw}
        return json.loads(raw)

    async def until(self, pred, timeout=5):
        """Reads until a message satisfies `pred`; returns it and what came before."""
        skipped = []
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            m = await self.recv(max(0.01, end - loop.time()))
            if pred(m):
                return m, skipped
            skipped.append(m)

    async def quiet(self, seconds=QUIET):
        """Whatever arrives within `seconds` (nothing, if all is well)."""
        got = []
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        try:
            while True:
                got.append(await self.recv(max(0.001, end - loop.time())))
        except asyncio.TimeoutError:
            return got

    async def join(self, room):
        """Joins and reads this connection's own `joined` and then `members`."""
        await self.send({"type": "join", "room": room})
        return await self.read_join(room)

    async def read_join(self, room):
        """Reads this connection's own `joined` of `room`, then its `members`. Other
        newcomers' `joined` of the room may come before or between them (the
        connection is in the room from the join on; its own `joined` is sent from its
        loop a moment later, and other loops' members join meanwhile): those are kept
        for recv()."""
        own = {"type": "joined", "room": room, "who": self.name}
        got, early = [], []
        seen_own = False
        while True:
            m = await self.recv()
            got.append(m)
            if not seen_own and m == own:
                seen_own = True
            elif seen_own and m.get("type") == "members" and m.get("room") == room:
                if not isinstance(m.get("who"), list) or self.name not in m["who"]:
                    raise AssertionError(f"join {room!r}: members without me: {short(got)}")
                self.backlog = early + self.backlog
                return m["who"]
            elif m.get("type") == "joined" and m.get("room") == room and m != own:
                early.append(m)
            else:
                raise AssertionError(f"join {room!r}: expected my joined, then members; got {short(got)}")

    async def close(self):
        await self.ws.close()


async def connect(url, **kw):
    ws = await websockets.connect(url, ping_interval=None, max_size=None, compression=None, **kw)
    try:
        raw = await asyncio.wait_for(ws.recv(), 5)
        welcome = json.loads(raw)
    except BaseException:
        await ws.close()
        raise
    return Client(ws, welcome)


async def connect_in(url, room, name):
    """Connects to /chat/ROOM and reads its own `joined` and `members`. Opening the
    next member only then keeps this one's `joined` from reaching it: the `joined`
    goes out from this connection's loop a moment after the open, and with several
    loops the next member may already be in the room by then."""
    cl = await connect(f"{url}/chat/{room}?name={name}")
    try:
        await cl.read_join(room)
    except BaseException:
        await cl.close()
        raise
    return cl


def chat_of(m, room=None, sender=None):
    return m.get("type") == "chat" and (room is None or m.get("room") == room) and \
        (sender is None or m.get("from") == sender)


# ------------------------------------------------------------------ the tests

async def welcome_and_names(url):
    a = await connect(url + "/")
    b = await connect(url + "/chat")
    c = await connect(url + "/?name=alice")
    d = await connect(url + "/?name=b%C3%B6b")
    try:
        for label, cl in (("/", a), ("/chat", b)):
            w = cl.welcome
            check(f"welcome first on {label}: type, a guest-N name, an instance",
                  w.get("type") == "welcome" and re.fullmatch(r"guest-\d+", str(w.get("name"))) is not None and
                  w.get("instance") not in (None, "") and set(w) == {"type", "name", "instance"}, short(w))
        check("two connections without ?name= get different guest names", a.name != b.name, f"{a.name} {b.name}")
        check("both connections name the same instance", a.welcome.get("instance") == b.welcome.get("instance"),
              f"{a.welcome} {b.welcome}")
        check("?name=alice names the connection", c.welcome.get("name") == "alice", short(c.welcome))
        check("?name= is percent-decoded (b%C3%B6b is böb)", d.welcome.get("name") == "böb", short(d.welcome))
        rest = await a.quiet()
        check("/ without ?room=: nothing after the welcome (no room joined)", rest == [], short(rest))
        rest = await b.quiet(0.05)
        check("/chat without ?room=: nothing after the welcome (no room joined)", rest == [], short(rest))
        # Names are labels: two connections may share one.
        e = await connect(url + "/?name=alice")
        check("two connections may share a name", e.welcome.get("name") == "alice", short(e.welcome))
        await e.close()
    finally:
        for cl in (a, b, c, d):
            await cl.close()


async def join_at_open(url):
    a = await connect(url + "/chat/lobby%20one?name=ann")
    try:
        joined = await a.recv()
        members = await a.recv()
        check("/chat/ROOM: welcome, then joined for the percent-decoded room",
              joined == {"type": "joined", "room": "lobby one", "who": "ann"}, short(joined))
        check("/chat/ROOM: then members, the newcomer alone",
              members == {"type": "members", "room": "lobby one", "who": ["ann"]}, short(members))
        b = await connect(url + "/?room=lobby%20one&name=ben")
        try:
            jb = await b.recv()
            mb = await b.recv()
            ja = await a.recv()
            check("?room=R joins R at open: joined to the newcomer",
                  jb == {"type": "joined", "room": "lobby one", "who": "ben"}, short(jb))
            check("?room=R: members lists both", mb.get("type") == "members" and mb.get("room") == "lobby one" and
                  sorted(mb.get("who", [])) == ["ann", "ben"], short(mb))
            check("joined also goes to the members already there", ja == jb, short(ja))
            c = await connect(url + "/chat?room=caf%C3%A9&name=cat")
            try:
                jc = await c.recv()
                check("/chat?room=R joins R", jc == {"type": "joined", "room": "café", "who": "cat"}, short(jc))
            finally:
                await c.close()
            extra = await a.quiet()
            check("a join to another room is not seen by this room's members", extra == [], short(extra))
        finally:
            await b.close()
    finally:
        await a.close()


async def join_leave_rooms(url):
    a = await connect(url + "/?name=a")
    b = await connect(url + "/?name=b")
    c = await connect(url + "/?name=c")
    clients = (a, b, c)
    try:
        who = await a.join("r1")
        check("join: joined then members [me] in an empty room", who == ["a"], short(who))
        who = await b.join("r1")
        check("join: members lists the newcomer and the members there", sorted(who) == ["a", "b"], short(who))
        m = await a.recv()
        check("join: a member gets joined for the newcomer", m == {"type": "joined", "room": "r1", "who": "b"}, short(m))
        await a.join("r2")
        await c.join("r2")
        m = await a.recv()
        check("several rooms per connection: joined of r2 to a", m == {"type": "joined", "room": "r2", "who": "c"},
              short(m))
        extra = await b.quiet(0.2)
        check("b (r1 only) sees nothing of r2's joins", extra == [], short(extra))

        # chat in r1: a and b get it, c (r2) does not; in r2: a and c.
        await b.send({"type": "chat", "room": "r1", "content": "to r1"})
        ma, mb = await a.recv(), await b.recv()
        check("chat: the sender gets its own message, with room, from, content, id",
              chat_of(mb, "r1", "b") and mb.get("content") == "to r1" and "id" in mb and
              set(mb) == {"type", "room", "from", "content", "id"}, short(mb))
        check("chat: another member gets the same message (same id)", ma == mb, f"{ma!r} {mb!r}")
        await c.send({"type": "chat", "room": "r2", "content": "to r2"})
        ma, mc = await a.recv(), await c.recv()
        check("several rooms per connection: a gets r2's chat too", chat_of(ma, "r2", "c") and ma == mc,
              f"{ma!r} {mc!r}")
        check("chat ids are unique", ma.get("id") != mb.get("id"), f"{ma.get('id')!r} {mb.get('id')!r}")
        extras = [await cl.quiet() for cl in clients]
        check("chat: each member gets each message once, non-members nothing", extras == [[], [], []],
              short(extras))

        # a leaves r1: a and b get left; then r1's chat is for b only.
        await a.send({"type": "leave", "room": "r1"})
        la, lb = await a.recv(), await b.recv()
        check("leave: the leaver gets left", la == {"type": "left", "room": "r1", "who": "a"}, short(la))
        check("leave: the other members get left", lb == la, short(lb))
        await b.send({"type": "chat", "room": "r1", "content": "after a left"})
        mb = await b.recv()
        check("after leave: the room's chat still reaches its members", chat_of(mb, "r1", "b"), short(mb))
        extra = await a.quiet()
        check("after leave: the leaver gets nothing of that room", extra == [], short(extra))
        await c.send({"type": "chat", "room": "r2", "content": "r2 still"})
        ma, mc = await a.recv(), await c.recv()
        check("after leaving r1, a is still in r2", chat_of(ma, "r2", "c") and ma == mc, f"{ma!r} {mc!r}")
        # Join r1 again: allowed after a leave.
        who = await a.join("r1")
        mb = await b.recv()
        check("joining again after leaving", sorted(who) == ["a", "b"] and mb.get("type") == "joined", f"{who} {mb}")
    finally:
        for cl in clients:
            await cl.close()


async def close_sends_left(url):
    a = await connect_in(url, "x", "a")
    b = await connect_in(url, "x", "b")
    c = await connect_in(url, "y", "c")
    try:
        await a.recv()  # b's joined
        await b.join("y")
        await c.recv()  # b's joined in y
        await b.close()
        la = await a.recv()
        lc = await c.recv()
        check("a closed connection: left to the members of each of its rooms",
              la == {"type": "left", "room": "x", "who": "b"} and lc == {"type": "left", "room": "y", "who": "b"},
              f"{la!r} {lc!r}")
        await c.send({"type": "chat", "room": "y", "content": "alone"})
        m = await c.recv()
        extra = await a.quiet()
        check("after the close, the room goes on without it", chat_of(m, "y", "c") and extra == [], f"{m} {extra}")
    finally:
        for cl in (a, b, c):
            await cl.close()


async def sender_order(url, n=300):
    a = await connect_in(url, "order", "sender")
    b = await connect_in(url, "order", "reader")
    try:
        await a.recv()  # b's joined
        for i in range(n):
            await a.send({"type": "chat", "room": "order", "content": str(i) + "." * (i % 7) * 300})
        got_a = [(await a.recv(10)).get("content", "").split(".")[0] for _ in range(n)]
        got_b = [(await b.recv(10)).get("content", "").split(".")[0] for _ in range(n)]
        want = [str(i) for i in range(n)]
        def first_difference(got):
            at = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), len(got))
            return f"from index {at}: {got[at:at + 5]!r}" if at < len(got) else ""
        check(f"per-sender order: {n} messages arrive in order at the sender", got_a == want, first_difference(got_a))
        check(f"per-sender order: {n} messages arrive in order at another member", got_b == want,
              first_difference(got_b))
    finally:
        await a.close()
        await b.close()


async def errors(url, max_message):
    """Each bad input gets one error back and is otherwise ignored: the connection
    stays open and nothing reaches anyone else."""
    a = await connect_in(url, "err", "a")
    o = await connect_in(url, "err", "o")
    try:
        await a.recv()  # o's joined

        async def expect_error(label, data):
            if isinstance(data, (dict, list)):
                await a.send(data)
            else:
                await a.send_raw(data)
            m = await a.recv()
            ok = m.get("type") == "error" and isinstance(m.get("reason"), str) and m["reason"] != "" and \
                set(m) == {"type", "reason"}
            check(f"error: {label}", ok, short(m))
            return m

        await expect_error("not JSON", "hello, this is not JSON")
        await expect_error("truncated JSON", '{"type":"join","room":"x"')
        await expect_error("not an object (array)", '["join","x"]')
        await expect_error("not an object (number)", "42")
        await expect_error("not an object (string)", '"join"')
        await expect_error("not an object (null)", "null")
        await expect_error("a binary message", json.dumps({"type": "join", "room": "bin"}).encode())
        await expect_error("unknown type", {"type": "dance", "room": "err"})
        await expect_error("missing type", {"room": "err", "content": "x"})
        await expect_error("non-string type", {"type": 7, "room": "err"})
        await expect_error("join: missing room", {"type": "join"})
        await expect_error("join: non-string room (number)", {"type": "join", "room": 5})
        await expect_error("join: non-string room (null)", {"type": "join", "room": None})
        await expect_error("leave: missing room", {"type": "leave"})
        await expect_error("leave: non-string room", {"type": "leave", "room": ["err"]})
        await expect_error("chat: missing room", {"type": "chat", "content": "x"})
        await expect_error("chat: missing content", {"type": "chat", "room": "err"})
        await expect_error("chat: non-string content (number)", {"type": "chat", "room": "err", "content": 1})
        await expect_error("chat: non-string content (object)", {"type": "chat", "room": "err", "content": {"a": 1}})
        await expect_error("chat: non-string room", {"type": "chat", "room": 3, "content": "x"})
        await expect_error("join: empty room name", {"type": "join", "room": ""})
        await expect_error("join: room name of 129 bytes", {"type": "join", "room": "r" * 129})
        await expect_error("join: room name of 129 bytes (64 × é + 1)", {"type": "join", "room": "é" * 64 + "x"})
        await expect_error("join twice", {"type": "join", "room": "err"})
        await expect_error("leave a room not joined", {"type": "leave", "room": "elsewhere"})
        await expect_error("chat to a room not joined", {"type": "chat", "room": "elsewhere", "content": "x"})
        await expect_error(f"chat: content of {max_message + 1} bytes (over --max-message {max_message})",
                           {"type": "chat", "room": "err", "content": "c" * (max_message + 1)})
        await expect_error(f"chat: content of {max_message + 2} bytes in 2-byte characters",
                           {"type": "chat", "room": "err", "content": "é" * (max_message // 2 + 1)})
        # a's own joined may reach o after o's (both joined at open; docs/chat.md): not bad input's.
        extra = await o.quiet()
        if {"type": "joined", "room": "err", "who": "a"} in extra:
            extra.remove({"type": "joined", "room": "err", "who": "a"})  # once, not twice
        check("bad input reaches no other member (no chat, no second joined)", extra == [], short(extra))
        # Ignored means ignored: the binary join did not join; the long names did not join.
        await expect_error("the binary join was ignored (chat to its room: not a member)",
                           {"type": "chat", "room": "bin", "content": "x"})

        # The limits themselves are allowed.
        who = await a.join("q" * 128)
        check("join: a room name of 128 bytes is accepted", who == ["a"], short(who))
        who = await a.join("é" * 64)
        check("join: a room name of 128 bytes (64 × é) is accepted", who == ["a"], short(who))
        await a.send({"type": "chat", "room": "err", "content": "c" * max_message})
        ma, mo = await a.recv(), await o.recv()
        check(f"chat: content of exactly --max-message ({max_message}) bytes is delivered",
              chat_of(ma, "err", "a") and len(ma.get("content", "")) == max_message and ma == mo,
              f"{str(ma)[:80]} {str(mo)[:80]}")
        await a.send({"type": "chat", "room": "err", "content": "é" * (max_message // 2)})
        ma, mo = await a.recv(), await o.recv()
        check(f"chat: {max_message} bytes in 2-byte characters are delivered",
              chat_of(ma, "err", "a") and ma.get("content") == "é" * (max_message // 2) and ma == mo,
              f"{str(ma)[:80]} {str(mo)[:80]}")
        # After all that, the connection still works.
        await a.send({"type": "chat", "room": "err", "content": "still here"})
        ma, mo = await a.recv(), await o.recv()
        check("after every error the connection is open and chats", ma.get("content") == "still here" and ma == mo,
              f"{ma!r} {mo!r}")
        check("no close after the errors", a.ws.close_code is None, short(a.ws.close_code))
    finally:
        await a.close()
        await o.close()


async def room_limit(url):
    """A connection may be in 64 rooms: the 65th join is an error, and leaving one
    makes room for another."""
    c = await connect(url + "/chat")
    try:
        for i in range(64):
            await c.join(f"many-{i}")
        await c.send({"type": "join", "room": "many-64"})
        m = await c.recv()
        check("a 65th room: error, not joined", m.get("type") == "error" and "64" in m.get("reason", ""), short(m))
        await c.send({"type": "leave", "room": "many-0"})
        m = await c.recv()
        check("leaving one of 64 rooms: left", m == {"type": "left", "room": "many-0", "who": c.name}, short(m))
        who = await c.join("many-64")
        check("then another room can be joined", c.name in who, short(who))
    finally:
        await c.close()


def test_errors():
    limit = 1000
    srv = chat_server("--max-message", str(limit))
    try:
        arun(errors(srv.url, limit))
        alive = srv.alive()
        check("the server with --max-message 1000 is still running", alive)
    finally:
        srv.stop()


def test_paths(srv):
    for path in ("/elsewhere", "/chatroom", "/api/chat/x", "/static/app.js"):
        st = upgrade_status(srv.port, path)
        check(f"an upgrade to {path} is refused with 404", st.startswith("HTTP/1.1 404"), st)

    async def refused():
        try:
            ws = await websockets.connect(srv.url + "/nowhere", ping_interval=None)
            await ws.close()
            return None
        except websockets.InvalidStatusCode as e:
            return e.status_code
    code = arun(refused())
    check("websockets sees the 404 on an unknown path", code == 404, short(code))


def test_bad_open(srv):
    """What the URL cannot carry: a name outside 1-64 bytes of printable UTF-8, a room
    over 128 bytes. The upgrade is refused (docs/chat.md's limits, checked at open)."""
    for label, path in (("?name= of 65 bytes", "/?name=" + "n" * 65),
                        ("an empty ?name=", "/?name="),
                        ("?name= with a control character", "/?name=a%01b"),
                        ("?name= that is not UTF-8", "/?name=a%FFb"),
                        ("/chat/ROOM of 129 bytes", "/chat/" + "r" * 129),
                        ("?room= of 129 bytes", "/?room=" + "r" * 129)):
        st = upgrade_status(srv.port, path)
        check(f"{label}: the upgrade is refused with a 4xx", re.match(r"HTTP/1\.1 4\d\d ", st) is not None, st)

    async def limits():
        a = await connect(srv.url + "/chat/" + "r" * 128 + "?name=" + "é" * 32)
        try:
            check("?name= of 64 bytes (32 × é) is accepted", a.name == "é" * 32, short(a.welcome))
            who = await a.read_join("r" * 128)
            check("/chat/ROOM of 128 bytes joins it", who == ["é" * 32], short(who))
        finally:
            await a.close()
    arun(limits())


def test_stats(srv):
    async def connections_become(n, seconds=15):
        """Polls /stats until it counts n connections (the request itself included):
        earlier connections may still be closing (a server lingers up to
        --close-timeout, 5 s, for a peer's FIN), and with several loops the previous
        request's may not be torn down yet. Returns the last count."""
        got = None
        for _ in range(int(seconds * 10)):
            got = json.loads(http_get(srv.port, "/stats")[2]).get("connections")
            if got == n:
                break
            await asyncio.sleep(0.1)
        return got

    async def body():
        check("GET /stats: connections settle to 1, the request itself", await connections_become(1) == 1)
        st, headers, raw = http_get(srv.port, "/stats")
        check("GET /stats answers 200 with JSON", st.startswith("HTTP/1.1 200") and
              re.search(r"(?im)^content-type:\s*application/json", headers) is not None, f"{st} {headers}")
        s0 = json.loads(raw)
        redis = s0.get("redis")
        check("GET /stats: instance, connections, redis (its fields are test_deployment.py's)",
              isinstance(s0.get("instance"), (str, int)) and isinstance(s0.get("connections"), int) and
              "redis" in s0, short(s0))
        # docs/chat.md lists redis' fields; without --redis the server answers null (no Redis at all).
        check("GET /stats without --redis: redis is null",
              redis is None, short(redis))
        clients = [await connect(srv.url + f"/chat/stats?name=s{i}") for i in range(3)]
        try:
            check("GET /stats: the instance is the one the welcome names",
                  s0.get("instance") == clients[0].welcome.get("instance"), f"{s0} {clients[0].welcome}")
            n = await connections_become(4)
            check("GET /stats: connections counts 3 more with 3 chat clients open", n == 4, f"{n}, not 1 + 3")
        finally:
            for cl in clients:
                await cl.close()
        n = await connections_become(1)
        check("GET /stats: connections back down once they closed", n == 1, f"{n}")
    arun(body())


async def chat_across_loops(url, rooms=4, per_room=10, per_sender=25):
    """Every member of a room gets every message of that room once, in each sender's
    order; nobody else gets it. Contents are "room:sender:seq|pad"; every fifth is 3 KB."""
    clients = []
    try:
        for r in range(rooms):
            for i in range(per_room):
                cl = await connect(f"{url}/chat/room{r}?name=r{r}c{i}")
                clients.append((r, i, cl))
        # Every member is in: its own joined came (the later joiners' too are read below).
        for r, i, cl in clients:
            await cl.read_join(f"room{r}")
        expected_total = per_room * per_sender
        got = {(r, i): [] for r, i, _ in clients}
        others = {(r, i): [] for r, i, _ in clients}

        async def reader(r, i, cl):
            while len(got[(r, i)]) < expected_total:
                m = await cl.recv(30)
                if m.get("type") == "chat":
                    got[(r, i)].append(m)
                elif m.get("type") != "joined" or m.get("room") != f"room{r}":
                    others[(r, i)].append(m)

        async def writer(r, i, cl):
            for seq in range(per_sender):
                pad = "x" * (3000 if seq % 5 == 0 else 0)
                await cl.send({"type": "chat", "room": f"room{r}", "content": f"{r}:{i}:{seq}|{pad}"})

        await asyncio.gather(*(reader(*c) for c in clients), *(writer(*c) for c in clients))
        extra = 0
        await asyncio.sleep(QUIET)  # anything extra (a duplicate, another room's) would arrive now
        for _, _, cl in clients:
            extra += len([m for m in await cl.quiet(0.01) if m.get("type") != "joined"])
    finally:
        for _, _, cl in clients:
            await cl.close()
    bad = []
    for (r, i), msgs in got.items():
        seen = {}
        ids = set()
        for m in msgs:
            mr, sender, seq = (int(x) for x in m["content"].split("|", 1)[0].split(":"))
            if (mr != r or m.get("room") != f"room{r}" or m.get("from") != f"r{r}c{sender}" or
                    seen.get(sender, -1) + 1 != seq):
                bad.append(((r, i), m["content"][:20], m.get("from")))
                break
            seen[sender] = seq
            ids.add(json.dumps(m.get("id")))
        if len(msgs) != expected_total or len(seen) != per_room or len(ids) != len(msgs):
            bad.append(((r, i), len(msgs), len(ids)))
        if others[(r, i)]:
            bad.append(((r, i), "other", others[(r, i)][:2]))
    return bad, extra


def test_chat_across_loops():
    srv = chat_server("--threads", "4")
    try:
        bad, extra = arun(chat_across_loops(srv.url), timeout=120)
        check("--threads 4, 40 clients in 4 rooms, 25 messages each: each member gets each message of its room "
              "once, in sender order", not bad and extra == 0, f"{bad[:3]} extra={extra}")
    finally:
        srv.stop()


def main():
    if not runnable(BIN):
        return 1
    try:
        srv = chat_server()
        run_check("welcome and names", lambda: arun(welcome_and_names(srv.url)))
        run_check("join at open", lambda: arun(join_at_open(srv.url)))
        run_check("join, leave, rooms, chat", lambda: arun(join_leave_rooms(srv.url)))
        run_check("close sends left", lambda: arun(close_sends_left(srv.url)))
        run_check("per-sender order", lambda: arun(sender_order(srv.url)))
        run_check("errors", test_errors)
        run_check("rooms per connection", lambda: arun(room_limit(srv.url)))
        run_check("paths", test_paths, srv)
        run_check("bad names and rooms at open", test_bad_open, srv)
        run_check("stats", test_stats, srv)
        run_check("chat across loops", test_chat_across_loops)
        alive = srv.alive()
        rc = srv.stop(signal.SIGTERM)
        err = srv.log_tail() if rc else ""
        check("the chat server is still running and exits 0 on SIGTERM", alive and rc == 0,
              f"alive={alive} rc={rc} {err}")
    except Exception as e:  # noqa: BLE001
        check("setup", False, f"{type(e).__name__}: {e}")
    finally:
        stop_all()
    return summary()


if __name__ == "__main__":
    sys.exit(main())
