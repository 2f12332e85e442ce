#!/usr/bin/python3
"""`ws6455 serve --mode chat --redis` against a real redis-server, where Redis is not
well: slow (stalled), wanting a password, not there at start; and rooms across
instances with several loops, and the --redis URL's checks.

Usage: /usr/bin/python3 tests/test_redis.py path/to/ws6455 [serve options...]

The serve options after the binary (for example `--backend io_uring --threads 2`)
are given to every instance the suite starts. redis-server runs on free ports of
127.0.0.1 (Debian's; without it the suite says so and passes, exit 0). Every wait
is bounded; every process started is stopped, or killed, at the end, whatever
happens. Prints "N passed, N failed"; exits 1 on any failure.

  a. A slow Redis (DEBUG SLEEP; SIGSTOP where DEBUG is refused) under an instance
     with --redis-max-pending 20000: 200 messages of 1 KiB sent meanwhile reach the
     local members at once, a member joining meanwhile gets its joined and members
     within 2 s, the rest of what Redis cannot take is dropped and
     counted (published + dropped + lost == sent), RSS stays put, and a second
     instance gets exactly the published ones.
  b. AUTH: the right password relays across instances; a wrong one is logged
     ("AUTH refused"), retried with backoff, not reported as connected, and local
     delivery goes on.
  c. No Redis at start: the instance serves, says "cannot connect" once, counts
     what it could not publish as lost; Redis started later: it connects and relays.
  d. --threads 4 and a second instance: 16 members in 2 rooms get every message
     once, in sender order; `joined` means subscribed (50 join-then-send races each
     way).
  e. Bad --redis URLs, and --redis without --mode chat: exit 2 with the reason.
  g. Presence: a newcomer's `members` names every instance's members, each name
     once; one that left is not listed; an instance whose session key lapsed
     registers again; a SIGKILLed instance's members stop being listed after its
     --redis-presence-ttl, and a room only it had expires; a restart under the same
     --instance does not bring crashed members back; a SIGTERMed instance's members
     go at once; after Redis restarts empty, every instance registers its members
     again; clean stops leave nothing in Redis.
"""
import asyncio
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

from checks import check, run_check, runnable, summary
from serving import ChatClient, Redis, Server, chat_round, deliveries, finish, free_port, redis_exe

BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tools/ws6455"
SERVE_ARGS = sys.argv[2:]
TMP = tempfile.mkdtemp(prefix="ws6455-redis-")
QUIET = 0.5          # how long "nothing else arrives" is watched for, in seconds
STALL_S = 3          # how long Redis stalls in a
MAX_PENDING = 20000  # a's --redis-max-pending
SLOW_MESSAGES = 200
SLOW_CONTENT = 1024
RACES = 50


def arun(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def instance(label, redis_url, *extra):
    """A chat instance on `redis_url`; its stderr in TMP/instance-LABEL.log."""
    return Server(BIN, "--mode", "chat", *SERVE_ARGS, "--redis", redis_url, *extra, name=f"instance {label}",
                  log=os.path.join(TMP, f"instance-{label}.log"))


def redis_version():
    try:
        out = subprocess.run([redis_exe(), "--version"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"v=(\d+)\.", out)
        return int(m.group(1)) if m else 0
    except (OSError, subprocess.TimeoutExpired):
        return 0


def start_redis(port=None, *args, password=None):
    # Redis 7 refuses DEBUG unless told (enable-debug-command); older ones know no such option.
    debug = ["--enable-debug-command", "local"] if redis_version() >= 7 else []
    return Redis(port, *debug, *args, password=password, dir=TMP)


def counted(st, before=None):
    """published, dropped, lost of /stats' redis (less `before`'s)."""
    keys = ("published", "dropped", "lost")
    return {k: st["redis"][k] - (before["redis"][k] if before else 0) for k in keys}


def settled(server, seconds=0.5, timeout=10):
    """/stats once published + dropped + lost stopped moving for `seconds` (bounded)."""
    last = server.stats()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = server.stats()
        if counted(now) == counted(last):
            return now
        last = now
    return last


def lines_with(text, needle):
    return [ln for ln in text.splitlines() if needle in ln]


async def stop_cleanly(part, *servers):
    """SIGTERM to each: it must still be running, and exit 0."""
    for x in servers:
        alive = x.alive()
        rc = await asyncio.to_thread(x.stop, signal.SIGTERM)
        check(f"{part}: {x.name} is still running and exits 0 on SIGTERM", alive and rc == 0,
              f"alive={alive} rc={rc} {x.log_tail(600)}")


async def open_joined(server, name, room, timeout=20):
    """A client on `server` that has joined `room` (its own joined and members came)."""
    c = await ChatClient(name, [room]).open(f"{server.url}/?name={name}")
    ok = await c.join(room, timeout)
    if not ok:
        raise AssertionError(f"{name} on {server.name}: no joined of {room} within {timeout} s: {c.log[-3:]}")
    return c


async def exchange(x, y, room, tag):
    """x and y (joined to `room` on two instances): one chat each way arrives once.
    Returns what went wrong (empty: nothing)."""
    problems = []
    for k, (s, r) in enumerate(((x, y), (y, x))):
        await s.chat(room, tag, k)
        if not await r.wait(lambda: r.seqs(tag, s.name) == [k], 10):
            problems.append(f"{r.name} got {r.seqs(tag, s.name)} of {s.name}'s [{k}]")
    await asyncio.sleep(QUIET)
    for c in (x, y):
        if len(c.chats.get(tag, [])) != 2:
            problems.append(f"{c.name}: {len(c.chats.get(tag, []))} chats of {tag}, not 2 (own and the other's)")
    return problems


# ------------------------------------------------------------------ a. a slow Redis

class Stall:
    """Redis stops answering for STALL_S seconds: DEBUG SLEEP on a connection of its
    own, or, where DEBUG is refused, SIGSTOP then SIGCONT."""

    def __init__(self, redis):
        self.redis = redis
        self.conn = redis.connect()
        self.stopped = None
        self.conn.send("DEBUG", "SLEEP", str(STALL_S))
        self.start = time.monotonic()
        try:
            r = self.conn.reply(0.2)
        except TimeoutError:
            r = None  # sleeping
        if r is not None:  # refused at once: stop the process instead
            self.stopped = redis.pid
            os.kill(redis.pid, signal.SIGSTOP)
            self.start = time.monotonic()

    def effective(self):
        """A PING on another connection goes unanswered for 0.3 s."""
        with self.redis.connect() as c:
            c.send("PING")
            try:
                c.reply(0.3)
                return False
            except TimeoutError:
                return True

    def over(self):
        """Whether Redis answers again (DEBUG SLEEP's reply is there, or the time is up)."""
        if self.stopped is not None:
            return time.monotonic() - self.start >= STALL_S
        return bool(self.conn.buf) or bool(select.select([self.conn.sock], [], [], 0)[0])

    def end(self, timeout=STALL_S + 10):
        """Waits for the stall's end; how long it lasted."""
        if self.stopped is not None:
            time.sleep(max(0.0, STALL_S - (time.monotonic() - self.start)))
            os.kill(self.stopped, signal.SIGCONT)
            self.stopped = None
        else:
            self.conn.reply(timeout)
        self.conn.close()
        return time.monotonic() - self.start


async def slow_redis(redis):
    a = instance("slow-A", redis.url(), "--redis-max-pending", str(MAX_PENDING))
    b = instance("slow-B", redis.url())
    clients = []
    stall = None
    try:
        ups = [await x.wait_redis(True, 15) for x in (a, b)]
        check("a: both instances connect to Redis", all(s["redis"]["connected"] for s in ups), repr(ups))
        sa = await open_joined(a, "sa", "slow")
        rb = await open_joined(b, "rb", "slow")
        clients += [sa, rb]
        ok = await sa.wait(lambda: sa.has(type="joined", room="slow", who="rb"), 10)
        check("a: B's member's joined reaches A's member (both instances subscribed)", ok, repr(sa.log[-3:]))
        st0 = await asyncio.to_thread(settled, a)
        rb0 = (await b.astats())["redis"]["received"]
        rss0 = a.rss_kib()

        stall = await asyncio.to_thread(Stall, redis)
        how = "SIGSTOP" if stall.stopped else f"DEBUG SLEEP {STALL_S}"
        stalled = await asyncio.to_thread(stall.effective)
        check(f"a: Redis stalls ({how}: a PING elsewhere goes unanswered)", stalled)
        t_send = time.monotonic()
        for seq in range(SLOW_MESSAGES):
            await sa.chat("slow", "slow", seq, SLOW_CONTENT)
        t_sent = time.monotonic()
        local = await sa.wait(lambda: len(sa.chats.get("slow", [])) >= SLOW_MESSAGES, STALL_S)
        t_local = time.monotonic()
        during = not stall.over()
        mid = await a.astats()
        during = during and not stall.over()
        check(f"a: while Redis stalls, the {SLOW_MESSAGES} messages of {SLOW_CONTENT} B reach the local member, "
              f"in order, before Redis answers again (the loop is not blocked)",
              local and during and sa.seqs("slow") == list(range(SLOW_MESSAGES)),
              f"{len(sa.chats.get('slow', []))} arrived; stall over: {not during}; sent in "
              f"{t_sent - t_send:.2f} s, all in {t_local - t_send:.2f} s after the first")
        print(f"     (stall from {how}: {SLOW_MESSAGES} sent in {t_sent - t_send:.2f} s, all delivered locally "
              f"{t_local - t_send:.2f} s after the first, {t_local - stall.start:.2f} s into the stall)")
        d = counted(mid, st0)
        check("a: during the stall GET /stats answers, Redis still connected, dropped > 0 already",
              during and mid["redis"]["connected"] is True and d["dropped"] > 0, f"{mid['redis']} (+{d})")
        lasted = await asyncio.to_thread(stall.end)
        stall = None
        print(f"     (Redis stalled {lasted:.2f} s)")

        st1 = await asyncio.to_thread(a.wait_stats, lambda st: sum(counted(st, st0).values()) >= SLOW_MESSAGES, 15)
        d = counted(st1, st0)
        check(f"a: once Redis is back, published + dropped + lost == the {SLOW_MESSAGES} messages sent",
              sum(d.values()) == SLOW_MESSAGES, f"{d}")
        bound = MAX_PENDING // SLOW_CONTENT
        check(f"a: dropped > 0, and no more published than --redis-max-pending {MAX_PENDING} holds (<= {bound})",
              d["dropped"] > 0 and 0 < d["published"] <= bound and d["lost"] == 0, f"{d}")
        check("a: the stall is not a disconnect (connected, reconnects unchanged)",
              st1["redis"]["connected"] is True and st1["redis"]["reconnects"] == st0["redis"]["reconnects"],
              repr(st1["redis"]))
        n = d["published"]
        await rb.wait(lambda: len(rb.chats.get("slow", [])) >= n, 10)
        await asyncio.sleep(QUIET)
        got = rb.seqs("slow")
        rbn = (await b.astats())["redis"]["received"] - rb0
        check("a: B's member gets exactly the published ones (as many as A published), each once, in order",
              len(got) == n and len(set(got)) == len(got) and got == sorted(got) and rbn == n,
              f"A published {n}; B received {rbn} from Redis, its member {len(got)}: {got[:25]}")
        # Back to normal: the next message crosses.
        await sa.chat("slow", "after", 0)
        ok = await rb.wait(lambda: rb.seqs("after") == [0], 10)
        check("a: after the stall, a message from A reaches B again", ok, repr(rb.seqs("after")))
        said = lines_with(a.output(), "too slow")
        check("a: the drops are logged once (\"too slow\", at most one line per 10 s)", len(said) == 1,
              f"{len(said)} lines: {said[:2]}")
        rss1 = a.rss_kib()
        check("a: A's RSS stays bounded (grew < 24 MiB)", rss0 and rss1 and rss1 - rss0 < 24 * 1024,
              f"{rss0} -> {rss1} KiB")
        print(f"     (A: published {n}, dropped {d['dropped']}; RSS {rss0} -> {rss1} KiB)")

        # Redis stalls again and a member joins meanwhile: its members list would wait
        # for Redis' answer; it waits a second at most (then the local members).
        stall = await asyncio.to_thread(Stall, redis)
        await asyncio.to_thread(stall.effective)
        t_join = time.monotonic()
        late = await ChatClient("late", ["slow"]).open(f"{a.url}/?name=late")
        clients.append(late)
        joined_in_time = await late.join("slow", 2.0)
        t_joined = time.monotonic()
        check("a: a member joining while Redis stalls gets its joined and members within 2 s (the local members)",
              joined_in_time and {"sa", "late"} <= set(members_of(late, "slow") or []),
              f"after {t_joined - t_join:.2f} s, {t_joined - stall.start:.2f} s into the stall: {late.log[-3:]!r}")
        await asyncio.to_thread(stall.end)
        stall = None
        await stop_cleanly("a", a, b)
    finally:
        if stall is not None:
            await asyncio.to_thread(stall.end)
        await asyncio.gather(*(c.close() for c in clients))
        for x in (a, b):
            x.stop()


# ------------------------------------------------------------------ b. AUTH

async def auth():
    redis = start_redis(password="secret")
    servers, clients = [], []
    try:
        a = instance("auth-A", redis.url())
        b = instance("auth-B", redis.url())
        servers += [a, b]
        ups = [await x.wait_redis(True, 15) for x in (a, b)]
        check("b: with redis://:secret@, both instances connect (requirepass secret)",
              all(s["redis"]["connected"] for s in ups), repr([s["redis"] for s in ups]))
        ca = await open_joined(a, "ca", "auth")
        cb = await open_joined(b, "cb", "auth")
        clients += [ca, cb]
        await ca.wait(lambda: ca.has(type="joined", room="auth", who="cb"), 10)
        problems = await exchange(ca, cb, "auth", "auth")
        check("b: with the password, messages cross instances both ways, once", not problems, repr(problems))

        w = instance("auth-wrong", redis.url("wrong"))
        servers.append(w)
        t0 = time.monotonic()
        deadline = t0 + 10
        while time.monotonic() < deadline and not lines_with(w.output(), "AUTH refused"):
            await asyncio.sleep(0.05)
        said = lines_with(w.output(), "AUTH refused")
        check("b: a wrong password: the instance logs \"AUTH refused\" (with Redis' reason)",
              said and "WRONGPASS" in said[0], w.log_tail())
        samples = []
        while time.monotonic() - t0 < 3:
            samples.append((await w.astats())["redis"])
            await asyncio.sleep(0.1)
        log = w.output()
        refused = len(lines_with(log, "AUTH refused"))
        # Backoff (0.1 s doubling): about 5 attempts in 3 s, 2 connections each.
        check("b: a refused AUTH is retried with backoff (at most 8 attempts in ~3 s: 16 \"AUTH refused\" lines)",
              refused <= 16, f"{refused} lines \"AUTH refused\" in {time.monotonic() - t0:.1f} s; "
              f"reconnects {samples[-1]['reconnects']}")
        check("b: a refused AUTH: /stats redis.connected false all along (sampled every 0.1 s)",
              not any(s["connected"] for s in samples),
              f"connected true in {sum(1 for s in samples if s['connected'])} of {len(samples)} samples")
        claimed = lines_with(log, "redis: connected to") + lines_with(log, "redis: back after")
        check("b: a refused AUTH is not taken for a connection (no \"connected to\"/\"back after\" line, "
              "reconnects 0)", not claimed and samples[-1]["reconnects"] == 0,
              f"{len(claimed)} such lines, e.g. {claimed[:2]}; reconnects {samples[-1]['reconnects']}")
        x = await open_joined(w, "x", "local")
        y = await open_joined(w, "y", "local")
        clients += [x, y]
        await x.chat("local", "local", 0)
        ok = all([await c.wait(lambda c=c: c.seqs("local") == [0], 10) for c in (x, y)])
        st = await w.astats()
        check("b: with the wrong password, local delivery works (joined, chat to both members)", ok,
              f"{x.seqs('local')} {y.seqs('local')}")
        check("b: with the wrong password, nothing is counted published (what was sent: lost)",
              st["redis"]["published"] == 0 and st["redis"]["lost"] >= 3, repr(st["redis"]))
        await stop_cleanly("b (wrong password)", w)
        # No password at all: Redis answers every command NOAUTH.
        n = instance("auth-none", redis.url(""))
        servers.append(n)
        await asyncio.sleep(0.5)
        before = (await n.astats())["redis"]
        nx = await open_joined(n, "nx", "none")
        ny = await open_joined(n, "ny", "none")
        clients += [nx, ny]
        await nx.chat("none", "none", 0)
        ok = all([await c.wait(lambda c=c: c.seqs("none") == [0], 10) for c in (nx, ny)])
        check("b: without the password: local delivery works (joined, chat to both members)", ok,
              f"{nx.seqs('none')} {ny.seqs('none')}")
        t0 = time.monotonic()
        mark = len(n.output())
        await asyncio.sleep(3)
        st = (await n.astats())["redis"]
        churn = len(lines_with(n.output()[mark:], "connection lost"))
        check("b: without the password, with a room to subscribe: reconnects with backoff (at most 8 \"connection "
              "lost\" lines in 3 s)", churn <= 8, f"{churn} lines in {time.monotonic() - t0:.1f} s; reconnects "
              f"{st['reconnects']}")
        check("b: without the password, the instance does not report connected while Redis refuses every command "
              "(/stats before any room: connected false)", before["connected"] is False and st["published"] == 0,
              f"before the first join: {before}; 3 s after: {st}")
        await stop_cleanly("b (no password)", n)
        await stop_cleanly("b", a, b)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        for s in servers:
            s.stop()
        redis.stop(signal.SIGTERM)


# ------------------------------------------------------------------ c. no Redis at start

async def redis_later():
    port = free_port()
    c = instance("later-C", f"redis://127.0.0.1:{port}")
    servers, clients = [c], []
    redis = None
    try:
        t0 = time.monotonic()
        x = await open_joined(c, "x", "later")
        y = await open_joined(c, "y", "later")
        clients += [x, y]
        for seq in range(5):
            await x.chat("later", "down", seq)
        ok = all([await m.wait(lambda m=m: m.seqs("down") == list(range(5)), 10) for m in (x, y)])
        check("c: no Redis at start: the instance serves, members join and chat locally", ok,
              f"{x.seqs('down')} {y.seqs('down')}")
        await asyncio.sleep(max(0.0, 3 - (time.monotonic() - t0)))
        log = c.output()
        said = lines_with(log, "cannot connect")
        check("c: \"cannot connect\" is logged once over ~3 s of retries", len(said) == 1,
              f"{len(said)} times: {said[:3]}")
        st = await c.astats()
        r = st["redis"]
        # 2 joined + 5 chats, each published to no one.
        check("c: what could not be published is counted lost (2 joined + 5 chats), connected false",
              r["connected"] is False and r["lost"] == 7 and r["published"] == 0 and r["dropped"] == 0, repr(r))

        redis = start_redis(port)
        t1 = time.monotonic()
        st = await c.wait_redis(True, 15)
        check("c: Redis started on that port: the instance connects (bounded wait)",
              st["redis"]["connected"] is True, f"{st['redis']} after {time.monotonic() - t1:.1f} s; "
              f"{c.log_tail(600)}")
        print(f"     (connected {time.monotonic() - t1:.1f} s after Redis started)")
        check("c: it says so (\"connected to\")", lines_with(c.output(), "redis: connected to"), c.log_tail(600))
        # The room its members joined while Redis was away is subscribed on connecting.
        channel = "ws6455:chat:later"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and redis.call("PUBSUB", "NUMSUB", channel)[1] != 1:
            await asyncio.sleep(0.05)
        subs = redis.call("PUBSUB", "NUMSUB", channel)[1]
        check("c: the room joined while Redis was away is subscribed once connected (PUBSUB NUMSUB 1)",
              subs == 1, repr(subs))
        d = instance("later-D", redis.url())
        servers.append(d)
        await d.wait_redis(True, 15)
        z = await open_joined(d, "z", "later")
        clients.append(z)
        seen = await x.wait(lambda: x.has(type="joined", room="later", who="z"), 10)
        check("c: a joiner on another instance is announced to the members of the first", seen, repr(x.log[-3:]))
        problems = await exchange(x, z, "later", "up")
        check("c: cross-instance delivery works both ways, once", not problems and y.seqs("up", "z") == [1],
              f"{problems} {y.seqs('up', 'z')}")
        await stop_cleanly("c", c, d)
    finally:
        await asyncio.gather(*(m.close() for m in clients))
        for s in servers:
            s.stop()
        if redis is not None:
            redis.stop(signal.SIGTERM)


# ------------------------------------------------------------------ f. a "Redis" that never answers

async def silent_redis():
    """Something accepts on the Redis port and never answers (a hung Redis, a
    blackholed proxy): the instance gives up on each attempt after 5 s, says so once,
    and serves locally meanwhile."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    c = instance("silent-F", f"redis://127.0.0.1:{port}")
    clients = []
    try:
        x = await open_joined(c, "x", "silent")
        clients.append(x)
        await x.chat("silent", "local", 0)
        check("f: a silent Redis: local chat works meanwhile", await x.wait(lambda: x.seqs("local") == [0], 10),
              repr(x.log[-3:]))
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and not lines_with(c.output(), "no answer within 5 s"):
            await asyncio.sleep(0.1)
        said = lines_with(c.output(), "no answer within 5 s")
        check("f: the instance says the attempt got no answer (after 5 s), once", len(said) == 1,
              f"{said} {c.log_tail(600)}")
        st = await c.astats()
        check("f: not connected", st["redis"]["connected"] is False, repr(st["redis"]))
        await stop_cleanly("f", c)
    finally:
        await asyncio.gather(*(m.close() for m in clients))
        c.stop()
        lsock.close()


# ------------------------------------------------------------------ d. several loops and instances

async def threads_and_races(redis):
    a = instance("threads-A", redis.url(), "--threads", "4")
    b = instance("threads-B", redis.url())
    clients = []
    try:
        for x in (a, b):
            await x.wait_redis(True, 15)
        # 16 members in 2 rooms: 5 of each room on A (over its 4 loops), 3 on B.
        for k in range(16):
            room = f"t{k % 2}"
            on = a if k % 8 < 5 else b
            clients.append(await ChatClient(f"m{k}", [room]).open(f"{on.url}/?name=m{k}"))
        # One after the other: each member is in (its instance subscribed) before the next joins.
        joined = [await c.join(next(iter(c.rooms))) for c in clients]
        check("d: 16 members join 2 rooms (10 on A, --threads 4; 6 on B)", all(joined),
              f"{joined.count(False)} did not")
        later = [(c, {o.name for o in clients[i + 1:] if o.rooms == c.rooms}) for i, c in enumerate(clients)]
        seen = await asyncio.gather(*(c.wait(lambda c=c, w=w: {m["who"] for m in c.log if m.get("type") == "joined"}
                                             >= w, 10) for c, w in later))
        check("d: each member gets the joined of every later member of its room, on either instance", all(seen),
              f"{seen.count(False)} of {len(clients)} did not")
        problems, n = await chat_round("t", clients, 10)
        check("d: 10 messages from each: each member gets each message of its room once, in sender order, nothing "
              "of the other room", not problems and n == deliveries(clients, 10), f"{n} received; {problems[:4]}")

        # join-then-send races: the newcomer's own joined means its instance is subscribed.
        misses = []
        for k in range(RACES):
            for label, (home, away) in (("B joins, A sends", (a, b)), ("A joins, B sends", (b, a))):
                room = f"race{k}-{label[0]}"
                sender = await open_joined(home, f"s{k}{label[0]}", room)
                newcomer = await ChatClient(f"n{k}{label[0]}", [room]).open(f"{away.url}/?name=n{k}{label[0]}")
                clients += [sender, newcomer]
                await newcomer.send({"type": "join", "room": room})
                if not await newcomer.wait(lambda: newcomer.has(type="joined", room=room, who=newcomer.name), 10):
                    misses.append(f"{label} #{k}: no joined")
                    continue
                await sender.chat(room, "race", k)  # no pause: the joined just came
                if not await newcomer.wait(lambda: newcomer.seqs("race") == [k], 5):
                    misses.append(f"{label} #{k}: got {newcomer.seqs('race')}")
                await newcomer.close()
                await sender.close()
        check(f"d: join-then-send, {RACES} times each way (A has 4 loops): a member that got its own joined gets "
              f"the next message of the room from the other instance", not misses, f"{len(misses)} missed: "
              f"{misses[:4]}")
        # Leave and join again at once: the unsubscribe on its way when the join comes.
        misses = []
        sender = await open_joined(a, "rs", "again")
        back = await open_joined(b, "rb", "again")
        clients += [sender, back]
        for k in range(RACES):
            await back.send({"type": "leave", "room": "again"})
            await back.send({"type": "join", "room": "again"})
            if not await back.wait(lambda: sum(1 for m in back.log if m == {"type": "joined", "room": "again",
                                                                            "who": "rb"}) == k + 2, 10):
                misses.append(f"#{k}: no joined")
                break
            await sender.chat("again", "again", k)
            if not await back.wait(lambda: back.seqs("again") == list(range(k + 1)), 5):
                misses.append(f"#{k}: got {back.seqs('again')[-3:]}")
                break
        check(f"d: leave and join again at once, {RACES} times: after each joined the next message from the other "
              f"instance arrives", not misses, repr(misses))
        await stop_cleanly("d", a, b)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        for x in (a, b):
            x.stop()


# ------------------------------------------------------------------ g. presence

def members_of(c, room):
    """The names of c's `members` of `room`, sorted (None: none came)."""
    lists = [m.get("who") for m in c.log if m.get("type") == "members" and m.get("room") == room]
    return sorted(lists[-1]) if lists and isinstance(lists[-1], list) else None


async def until_gone(redis, keys, timeout=10):
    """Until none of `keys` exists in Redis (bounded)."""
    deadline = time.monotonic() + timeout
    while keys and time.monotonic() < deadline and redis.call("EXISTS", *keys) != 0:
        await asyncio.sleep(0.1)


async def presence():
    redis = start_redis()
    a = instance("presence-A", redis.url(), "--redis-presence-ttl", "3")
    b = instance("presence-B", redis.url())
    c = instance("presence-C", redis.url(), "--redis-presence-ttl", "1")
    d = None
    clients = []

    async def newcomer(server, name, room="who"):
        cl = await open_joined(server, name, room)
        clients.append(cl)
        return cl

    try:
        for x in (a, b, c):
            await x.wait_redis(True, 15)
        pa = await newcomer(a, "pa")
        pb = await newcomer(b, "pb")
        check("g: a newcomer on B lists the member on A, and itself", members_of(pb, "who") == ["pa", "pb"],
              repr(pb.log[-3:]))
        twin = await newcomer(b, "pa")
        check("g: a name on two instances is listed once", members_of(twin, "who") == ["pa", "pb"],
              repr(twin.log[-3:]))
        await pb.close()
        check("g: a member's close: left reaches the other instance's member",
              await pa.wait(lambda: pa.has(type="left", room="who", who="pb"), 10), repr(pa.log[-3:]))
        n1 = await newcomer(a, "n1")
        check("g: a member that left (closed) is no longer listed", members_of(n1, "who") == ["n1", "pa"],
              repr(n1.log[-3:]))
        await twin.send({"type": "leave", "room": "who"})
        check("g: a leave: left reaches the leaver",
              await twin.wait(lambda: twin.has(type="left", room="who", who="pa"), 10), repr(twin.log[-3:]))
        n2 = await newcomer(b, "n2")
        check("g: a name that left one instance and is still on another stays listed",
              members_of(n2, "who") == ["n1", "n2", "pa"], repr(n2.log[-3:]))

        # A's session key lapses (here: deleted): A notices at its next renewal (every
        # 1 s) and registers its members under a new session.
        keys = redis.call("KEYS", f"ws6455:chat:session:{pa.instance}.*")
        redis.call("DEL", *keys)
        await asyncio.sleep(1.5)
        n3 = await newcomer(b, "n3")
        check("g: after its session key lapsed, an instance's members are listed again (a new session)",
              len(keys) == 1 and members_of(n3, "who") == ["n1", "n2", "n3", "pa"], f"{keys} {n3.log[-3:]!r}")

        pc = await newcomer(c, "pc")
        await pc.join("c-only")
        check("g: a newcomer on a third instance lists all three instances' members",
              members_of(pc, "who") == ["n1", "n2", "n3", "pa", "pc"], repr(pc.log[-3:]))
        c_keys = redis.call("KEYS", f"ws6455:chat:session:{pc.instance}.*")
        c.stop(signal.SIGKILL)
        await until_gone(redis, c_keys)  # C's --redis-presence-ttl is 1 s
        n4 = await newcomer(a, "n4")
        check("g: a SIGKILLed instance's members are not listed once its session expired (1 s)",
              members_of(n4, "who") == ["n1", "n2", "n3", "n4", "pa"], repr(n4.log[-3:]))
        await until_gone(redis, ["ws6455:chat:members:c-only"], 8)
        check("g: the members hash of a room only the SIGKILLed instance had expires (3 TTLs)",
              redis.call("EXISTS", "ws6455:chat:members:c-only") == 0)

        # Restarted under the same --instance after a crash: its earlier members stay gone.
        d = instance("presence-D", redis.url(), "--instance", "fixed", "--redis-presence-ttl", "1")
        await d.wait_redis(True, 15)
        await newcomer(d, "ghost", "d-room")
        d_keys = redis.call("KEYS", "ws6455:chat:session:fixed.*")
        d.stop(signal.SIGKILL)
        d = instance("presence-D2", redis.url(), "--instance", "fixed", "--redis-presence-ttl", "1")
        await d.wait_redis(True, 15)
        await until_gone(redis, d_keys)
        n5 = await newcomer(a, "n5", "d-room")
        check("g: an instance restarted under the same --instance does not bring back its crashed members",
              members_of(n5, "d-room") == ["n5"], repr(n5.log[-3:]))

        rc = await asyncio.to_thread(b.stop, signal.SIGTERM)  # n2, n3 were on B, whose TTL is 15 s
        n6 = await newcomer(a, "n6")
        check("g: a SIGTERMed instance's members are not listed, at once",
              rc == 0 and members_of(n6, "who") == ["n1", "n4", "n6", "pa"], f"rc={rc} {n6.log[-3:]!r}")

        port = redis.port
        before = (await a.astats())["redis"]["reconnects"]
        redis.stop(signal.SIGKILL)
        redis = start_redis(port)  # empty: nothing saved
        await asyncio.to_thread(a.wait_stats, lambda st: st["redis"]["reconnects"] > before and
                                st["redis"]["connected"] is True, 15)
        n7 = await newcomer(a, "n7")
        check("g: after Redis restarted empty, the instance registered its members again",
              members_of(n7, "who") == ["n1", "n4", "n6", "n7", "pa"], repr(n7.log[-3:]))
        await asyncio.gather(*(cl.close() for cl in clients))
        await stop_cleanly("g", a, d)
        left = redis.call("KEYS", "ws6455:chat:*")
        check("g: nothing of the instances left in Redis after their clean stops (fields and session keys)",
              left == [], repr(left))
    finally:
        await asyncio.gather(*(m.close() for m in clients))
        for x in (a, b, c, d):
            if x is not None:
                x.stop()
        redis.stop()


# ------------------------------------------------------------------ e. the URL

def bad_urls():
    for url, reason in (("redis://", "no host"), ("redis://h:99999", "bad port"), ("http://x", "redis://"),
                        ("redis://h:0", "bad port"), ("redis://user:pw@h", "credentials"),
                        ("redis://h:6379/x", "database")):
        r = subprocess.run([BIN, "serve", "--mode", "chat", "--port", "0", *SERVE_ARGS, "--redis", url],
                           capture_output=True, text=True, timeout=20)
        check(f"e: --redis {url}: exit 2, \"{reason}\" said on stderr, nothing served",
              r.returncode == 2 and "--redis" in r.stderr and reason in r.stderr and "listening" not in r.stdout,
              f"rc={r.returncode} {r.stderr.strip()[:300]!r} {r.stdout[:100]!r}")
    r = subprocess.run([BIN, "serve", "--port", "0", *SERVE_ARGS, "--redis", "redis://127.0.0.1:6379"],
                       capture_output=True, text=True, timeout=20)
    check("e: --redis without --mode chat: exit 2, said why", r.returncode == 2 and "--mode chat" in r.stderr,
          f"rc={r.returncode} {r.stderr.strip()[:300]!r}")


def main():
    if not runnable(BIN):
        return 1
    if not redis_exe():
        print("skip redis: redis-server not installed (apt-get install redis-server)")
        print("0 passed, 0 failed")
        return 0
    t_start = time.monotonic()
    redis = None
    try:
        run_check("e. bad URLs", bad_urls)
        redis = start_redis()
        run_check("a. slow Redis", lambda: arun(slow_redis(redis)))
        run_check("b. AUTH", lambda: arun(auth()))
        run_check("c. Redis later", lambda: arun(redis_later()))
        run_check("d. threads and races", lambda: arun(threads_and_races(redis), 240))
        run_check("f. a silent Redis", lambda: arun(silent_redis()))
        run_check("g. presence", lambda: arun(presence()))
        if redis.alive():
            rc = redis.stop(signal.SIGTERM)
            check("redis-server stops on SIGTERM", rc == 0, f"rc={rc}")
    except Exception as e:  # noqa: BLE001
        check("setup", False, f"{type(e).__name__}: {e}")
    finally:
        finish(t_start, TMP)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
