#!/usr/bin/python3
"""The real deployment of docs/deployment.md: Redis, two `ws6455 serve --mode chat
--redis` instances, and nginx in front of both as the load balancer.

Usage: /usr/bin/python3 tests/test_deployment.py path/to/ws6455 [serve options...]

The serve options after the binary (for example `--backend epoll`) are given to
both instances. nginx's configuration is the one docs/deployment.md shows (the
block after `<!-- example: nginx_conf -->`), with this run's temporary directory
and ports put in. Everything runs on 127.0.0.1 with free ports; every wait is
bounded; every process started is stopped, or killed, at the end, whatever happens.
Without redis-server or nginx the suite says so and passes (exit 0).

The scenario: 200 clients through nginx in 10 rooms, 20 messages each: every member
gets every message of its room once, in each sender's order, and nobody else gets
it; both instances served clients. Redis is stopped mid-run (messages sent
meanwhile are delivered locally and counted as lost), started again (the instances
reconnect, and cross-instance delivery resumes), then one instance is killed (its
clients see 1006, reconnect through nginx to the other, rejoin, and a last round
reaches everyone once). Printed, not asserted beyond sanity: the cross-instance
latency p50/p99 and the messages/s one instance relays through Redis at 1 KiB.
Prints "N passed, N failed"; exits 1 on any failure.
"""
import asyncio
import os
import pathlib
import signal
import socket
import sys
import tempfile
import time

from checks import check, runnable, summary
from serving import ChatClient as Client
from serving import Proc, Redis, Server, chat_round, deliveries, find_program, finish, free_port, rss_kib, stop_all

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build/tools/ws6455"
SERVE_ARGS = sys.argv[2:]
CLIENTS = 200
ROOMS = 10
PER_SENDER = 20      # the first round; later rounds send fewer
LATENCY_SAMPLES = 300
RELAY_SECONDS = 3.0
RELAY_CONTENT = 1024


# ------------------------------------------------------------------ processes

class Instance(Server):
    """`ws6455 serve --mode chat --redis` on the suite's Redis; its log in `tmp`."""

    def __init__(self, label, redis_port, tmp, *extra):
        super().__init__(BIN, "--mode", "chat", "--redis", f"redis://127.0.0.1:{redis_port}", *SERVE_ARGS, *extra,
                         name=f"instance {label}", log=os.path.join(tmp, f"instance-{label}.log"))
        self.label = label
        self.id = self.stats()["instance"]


NGINX_MARKER = "<!-- example: nginx_conf -->"
DOC_PREFIX = "/tmp/ws6455-nginx"
DOC_LISTEN = "127.0.0.1:8080"
DOC_UPSTREAMS = ("127.0.0.1:9001", "127.0.0.1:9002")


def nginx_config(tmp, listen_port, upstream_ports):
    """docs/deployment.md's nginx configuration, with this run's directory and ports."""
    lines = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(NGINX_MARKER)
    begin = next(i for i in range(start, len(lines)) if lines[i].startswith("```nginx"))
    end = next(i for i in range(begin + 1, len(lines)) if lines[i].startswith("```"))
    conf = "\n".join(lines[begin + 1:end]) + "\n"
    for fixed in (DOC_PREFIX, DOC_LISTEN, *DOC_UPSTREAMS):
        if fixed not in conf:
            raise RuntimeError(f"docs/deployment.md's nginx block no longer has {fixed}: update the test with it")
    conf = conf.replace(DOC_PREFIX, tmp).replace(DOC_LISTEN, f"127.0.0.1:{listen_port}")
    for fixed, port in zip(DOC_UPSTREAMS, upstream_ports):
        conf = conf.replace(fixed, f"127.0.0.1:{port}")
    return conf


def start_nginx(exe, tmp, upstream_ports):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_config(tmp, port, upstream_ports))
    p = Proc([exe, "-e", os.path.join(tmp, "error.log"), "-c", conf, "-p", tmp + "/"], "nginx",
             os.path.join(tmp, "nginx.out"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and p.alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    err = pathlib.Path(tmp, "error.log").read_text(errors="replace")[-1500:] if os.path.exists(
        os.path.join(tmp, "error.log")) else ""
    raise RuntimeError(f"nginx did not start: {p.log_tail()} {err}")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


# ------------------------------------------------------------------ clients

async def open_many(url, names_rooms, batch=50):
    out = []
    for k in range(0, len(names_rooms), batch):
        group = [Client(n, [r] if r else []) for n, r in names_rooms[k:k + batch]]
        await asyncio.gather(*(c.open(f"{url}/?name={c.name}") for c in group))
        out.extend(group)
    return out


def across(clients, tag):
    """How many of a round's deliveries crossed instances (sender and receiver on different ones)."""
    where = {c.name: c.instance for c in clients}
    return sum(1 for c in clients for x in c.chats.get(tag, []) if where.get(x[2]) != c.instance)


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ------------------------------------------------------------------ the scenario

async def scenario(env):
    redis_port, tmp, redis_exe = env["redis_port"], env["tmp"], env["redis_exe"]
    a, b = env["a"], env["b"]
    nginx_url = f"ws://127.0.0.1:{env['nginx_port']}"
    clients = []
    extra = []  # clients outside the 200, closed at the end
    try:
        # 1. 200 clients through nginx, one room each (10 rooms, each on both instances); each
        # waits for its own joined.
        workers = children(env["nginx"].pid)
        worker_rss0 = (rss_kib(workers[0]) or 0) if workers else 0
        t0 = time.monotonic()
        clients = await open_many(nginx_url, [(f"c{i:03d}", None) for i in range(CLIENTS)])
        welcomes_ok = all(c.welcome.get("type") == "welcome" and c.welcome.get("name") == c.name for c in clients)
        check("200 clients through nginx: each gets its welcome, with its ?name=", welcomes_ok,
              repr([c.welcome for c in clients if c.welcome.get("name") != c.name][:2]))
        on_a = [c for c in clients if c.instance == a.id]
        on_b = [c for c in clients if c.instance == b.id]
        check("nginx spread the clients over both instances (the welcome names the instance)",
              len(on_a) + len(on_b) == CLIENTS and len(on_a) >= CLIENTS // 4 and len(on_b) >= CLIENTS // 4,
              f"A {len(on_a)}, B {len(on_b)}, other {CLIENTS - len(on_a) - len(on_b)} (A={a.id!r} B={b.id!r})")
        # Rooms across instances: each instance's clients are dealt over the rooms in turn.
        room = {}
        for group in (on_a, on_b, [c for c in clients if c not in on_a and c not in on_b]):
            for k, c in enumerate(group):
                room[c.name] = f"room{k % ROOMS}"
                c.rooms = {room[c.name]}
        mixed = [r for r in {f"room{k}" for k in range(ROOMS)}
                 if {c.instance for c in clients if r in c.rooms} == {a.id, b.id}]
        check("every room has members on both instances", len(mixed) == ROOMS, f"{sorted(mixed)}")
        joined = await asyncio.gather(*(c.join(room[c.name]) for c in clients))
        check("every client got its own joined, then members naming it", all(joined),
              f"{joined.count(False)} did not")
        print(f"     (200 clients connected through nginx and joined in {time.monotonic() - t0:.2f} s: "
              f"{len(on_a)} on A, {len(on_b)} on B)")
        if workers:
            grown = (rss_kib(workers[0]) or 0) - worker_rss0
            print(f"     (nginx worker RSS +{grown} KiB for {CLIENTS} proxied WebSockets: "
                  f"~{grown * 1024 // CLIENTS} B each)")

        # 2. The first round: 200 senders × 20 messages, 20 members a room.
        t0 = time.monotonic()
        problems, n = await chat_round("r1", clients, PER_SENDER)
        check(f"round 1: {CLIENTS} clients × {PER_SENDER} messages in {ROOMS} rooms through nginx and Redis: each "
              f"member gets each message of its room once, in sender order, nobody else",
              not problems and n == deliveries(clients, PER_SENDER), f"{n} received; {problems[:4]}")
        print(f"     ({n} deliveries in {time.monotonic() - t0:.1f} s, {across(clients, 'r1')} of them from one "
              f"instance to the other)")

        # 3. Membership across instances: a late joiner on B is announced on A, and so is its leave.
        late = await Client("late", ["room0"]).open(b.url + "/?name=late")
        extra.append(late)
        ok = await late.join("room0")
        room0 = [c for c in clients if "room0" in c.rooms]
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="joined", room="room0", who="late"), 10)
                                      for c in room0))
        check("a joiner on instance B: joined reaches the room's members on both instances",
              ok and all(seen), f"own joined {ok}; {seen.count(False)} of {len(room0)} missed it")
        await late.send({"type": "leave", "room": "room0"})
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="left", room="room0", who="late"), 10)
                                      for c in room0 + [late]))
        check("its leave: left reaches every member on both instances, and the leaver", all(seen),
              f"{seen.count(False)} missed it")
        gone = await Client("gone", ["room0"]).open(b.url + "/chat/room0?name=gone")
        ok = await gone.wait(lambda: gone.has(type="joined", room="room0", who="gone"), 10)
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="joined", room="room0", who="gone"), 10)
                                      for c in room0))
        await gone.close()
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="left", room="room0", who="gone"), 10)
                                      for c in room0))
        check("a member on B that closes: left reaches the room's members on both instances", ok and all(seen),
              f"own joined {ok}; {seen.count(False)} of {len(room0)} missed its left")

        # 4. Measurements, with clients straight on the instances (no nginx between).
        await measure(a, b, extra)

        # 5. Redis stops: local delivery goes on, cross-instance messages are lost (and counted).
        before = {x.label: (await x.astats())["redis"] for x in (a, b)}
        rc = env["redis"].stop(signal.SIGTERM)
        check("redis-server stops on SIGTERM", rc == 0, f"rc={rc}")
        down = [await x.wait_redis(False, 15) for x in (a, b)]
        check("both instances notice Redis is gone (GET /stats: redis.connected false)",
              all(s["redis"]["connected"] is False for s in down), repr([s["redis"] for s in down]))
        problems, n = await chat_round("down", clients, 3, required=lambda s, r: s.instance == r.instance,
                                       timeout=30)
        check("Redis down: local delivery goes on (each member gets its own instance's messages once, in order)",
              not problems, f"{problems[:4]}")
        cross = across(clients, "down")
        after = {x.label: (await x.astats())["redis"] for x in (a, b)}
        lost = {k: after[k]["lost"] - before[k]["lost"] for k in after}
        check("messages sent while Redis was down are counted as lost (redis.lost grew on both instances)",
              all(v > 0 for v in lost.values()), f"lost +{lost}; {after}")
        print(f"     (Redis down: {n} deliveries, {cross} of them across instances; lost +{lost})")

        env["redis"] = Redis(redis_port, dir=tmp, exe=redis_exe)
        t0 = time.monotonic()
        up = [await x.wait_redis(True, 20) for x in (a, b)]
        check("Redis back on its port: both instances reconnect (redis.connected true, reconnects grew)",
              all(s["redis"]["connected"] is True and s["redis"]["reconnects"] > before[x.label]["reconnects"]
                  for s, x in zip(up, (a, b))), repr([s["redis"] for s in up]))
        print(f"     (instances reconnected {time.monotonic() - t0:.1f} s after Redis came back)")
        problems, n = await chat_round("again", clients, 10)
        check("after the reconnect, cross-instance delivery resumes: every member gets every message of its "
              "room once, in order", not problems and n == deliveries(clients, 10),
              f"{n} received; {problems[:4]}")

        # 6. Instance B is killed: its clients see 1006, reconnect through nginx to A, rejoin.
        victims = [c for c in clients if c.instance == b.id]
        survivors = [c for c in clients if c.instance != b.id]
        rc = b.stop(signal.SIGKILL)
        check("instance B killed (SIGKILL)", rc == -signal.SIGKILL, f"rc={rc}")
        await asyncio.gather(*(c.wait(lambda: False, 10) for c in victims))  # until each ended, at most 10 s
        codes = sorted({c.ws.close_code for c in victims}, key=str)
        check(f"B's {len(victims)} clients see their connection end with 1006",
              victims and all(c.ended.is_set() and c.ws.close_code == 1006 for c in victims), f"codes {codes}")
        check("A's clients stay connected", all(not c.ended.is_set() for c in survivors),
              f"{sum(c.ended.is_set() for c in survivors)} ended")
        t0 = time.monotonic()
        for c in victims:
            await c.close()
        index = {c.name: i for i, c in enumerate(clients)}
        back = await open_many(nginx_url, [(c.name, room[c.name]) for c in victims])
        check("they reconnect through nginx, and land on instance A", all(c.instance == a.id for c in back),
              repr({c.instance for c in back}))
        joined = await asyncio.gather(*(c.join(room[c.name]) for c in back))
        check("and rejoin their rooms (own joined)", all(joined), f"{joined.count(False)} did not")
        print(f"     ({len(back)} clients reconnected and rejoined in {time.monotonic() - t0:.2f} s)")
        for c in back:
            clients[index[c.name]] = c
        problems, n = await chat_round("final", clients, 10)
        check("the last round, all 200 on A: every member gets every message of its room once, in order",
              not problems and n == deliveries(clients, 10), f"{n} received; {problems[:4]}")

        # 7. An instance stopped with SIGTERM: its clients get 1001, the other instances' members `left`.
        c_inst = Instance("C", redis_port, tmp)
        env["c"] = c_inst
        x = await Client("x", ["room1"]).open(c_inst.url + "/?name=x")
        extra.append(x)
        ok = await x.join("room1")
        room1 = [c for c in clients if "room1" in c.rooms]
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="joined", room="room1", who="x"), 10)
                                      for c in room1))
        check("a third instance joins in: its member's joined reaches the room on A", ok and all(seen),
              f"own joined {ok}; {seen.count(False)} missed it")
        rc = await asyncio.to_thread(c_inst.stop, signal.SIGTERM)
        await x.wait(lambda: False, 5)
        check("SIGTERM on that instance: its client gets close 1001, it exits 0",
              x.ws.close_code == 1001 and rc == 0, f"code {x.ws.close_code} rc={rc} {c_inst.log_tail()}")
        seen = await asyncio.gather(*(c.wait(lambda c=c: c.has(type="left", room="room1", who="x"), 10)
                                      for c in room1))
        check("and the members on A get left for its client", all(seen), f"{seen.count(False)} of {len(room1)} "
              f"missed it")
    finally:
        await asyncio.gather(*(c.close() for c in clients + extra))


async def measure(a, b, extra):
    """Cross-instance latency, and the relay rate of one instance at 1 KiB."""
    la = await Client("lat-a", ["lat"]).open(a.url + "/?name=lat-a")
    lb = await Client("lat-b", ["lat"]).open(b.url + "/?name=lat-b")
    extra += [la, lb]
    ok = await la.join("lat") and await lb.join("lat")
    ok = ok and await la.wait(lambda: la.has(type="joined", room="lat", who="lat-b"), 10)
    samples = []
    for k in range(LATENCY_SAMPLES if ok else 0):
        await la.chat("lat", "lat", k)
        if not await lb.wait(lambda: len(lb.chats.get("lat", [])) > k, 5):
            break
        x = lb.chats["lat"][k]
        samples.append((x[5] - x[6]) / 1e6)
    got = [(x[2], x[3]) for x in lb.chats.get("lat", [])]
    check(f"latency: {LATENCY_SAMPLES} messages from A reach B once, in order",
          ok and got == [("lat-a", k) for k in range(LATENCY_SAMPLES)], f"joined {ok}; {len(got)} arrived")
    samples.sort()
    if samples:
        print(f"     cross-instance latency (client → A → Redis → B → client, Python clients): "
              f"p50 {percentile(samples, 50):.2f} ms, p99 {percentile(samples, 99):.2f} ms "
              f"({len(samples)} samples, one at a time)")

    senders = [await Client(f"s{k}", ["relay"]).open(a.url + f"/?name=s{k}") for k in range(2)]
    rb = await Client("relay-b", ["relay"]).open(b.url + "/?name=relay-b")
    extra += senders + [rb]
    ok = all([await s.join("relay") for s in senders]) and await rb.join("relay")
    ok = ok and await senders[0].wait(lambda: senders[0].has(type="joined", room="relay", who="relay-b"), 10)
    fa0, fb0 = await a.astats(), await b.astats()
    sa0, sb0 = fa0["redis"], fb0["redis"]
    sent = [0] * len(senders)

    async def blast(k, s):
        end = time.monotonic() + RELAY_SECONDS
        while time.monotonic() < end:
            await s.chat("relay", "relay", sent[k], RELAY_CONTENT)
            sent[k] += 1
    t0 = time.monotonic()
    if ok:
        await asyncio.gather(*(blast(k, s) for k, s in enumerate(senders)))
    total = sum(sent)
    # What A published and B received from Redis, once it settled (no change for 1 s, at most 20 s).
    last, changed_at, t_end = None, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < RELAY_SECONDS + 20:
        sa, sb = (await a.astats())["redis"], (await b.astats())["redis"]
        now = (sa["published"] - sa0["published"], sa["dropped"] - sa0["dropped"], sb["received"] - sb0["received"])
        if now != last:
            if last is not None and now[2] != last[2]:
                t_end = time.monotonic()
            last, changed_at = now, time.monotonic()
        elif time.monotonic() - changed_at > 1:
            break
        await asyncio.sleep(0.1)
    published, dropped, relayed = last
    rate = relayed / (t_end - t0) if t_end > t0 else 0
    check("relay: every message sent on A went to Redis (published, or counted dropped), and instance B received "
          "each from Redis", ok and published + dropped == total and relayed == published and rate > 0,
          f"joined {ok}; sent {total}: A published {published}, dropped {dropped}; B received {relayed}")
    got = rb.chats.get("relay", [])
    if "slow_dropped" in fb0:
        # Every copy reached its member, or the instance counted it skipped (slow_dropped).
        def accounted():
            return (len(rb.chats.get("relay", [])) + fb1["slow_dropped"] - fb0["slow_dropped"] == relayed and
                    sum(len(s.chats.get("relay", [])) for s in senders) + fa1["slow_dropped"] - fa0["slow_dropped"]
                    == published * len(senders))
        deadline = time.monotonic() + 10
        while True:
            fa1, fb1 = await a.astats(), await b.astats()
            if accounted() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        check("relay: each copy reached its member or was counted in slow_dropped (B: its client; A: the senders)",
              accounted(), f"B relayed {relayed}: client {len(got)}, slow_dropped +"
              f"{fb1['slow_dropped'] - fb0['slow_dropped']}; A published {published} to {len(senders)} members: "
              f"{[len(s.chats.get('relay', [])) for s in senders]}, slow_dropped +"
              f"{fa1['slow_dropped'] - fa0['slow_dropped']}")
    else:
        print("     note: GET /stats has no slow_dropped: copies skipped for slow consumers are not accounted")
    got = rb.chats.get("relay", [])
    keys = [(x[2], x[3]) for x in got]
    check("relay: B's client got no message twice, in each sender's order",
          len(keys) == len(set(keys)) and all(
              [x[3] for x in got if x[2] == s.name] == sorted(x[3] for x in got if x[2] == s.name) for s in senders),
          f"{len(keys) - len(set(keys))} twice")
    print(f"     relay through Redis at {RELAY_CONTENT} B of content: {rate:.0f} msgs/s (instance B received "
          f"{relayed} from Redis in {t_end - t0:.1f} s; {len(senders)} clients on A sent {total} in "
          f"{RELAY_SECONDS:.0f} s; A dropped {dropped})")
    own = [len(s.chats.get("relay", [])) for s in senders]
    print(f"     (B's one Python client received {len(got)} of them, the senders {own} of their {total}: "
          f"the rest were skipped as copies to slow consumers, over high_water: GET /stats slow_dropped)")
    for c in senders + [rb, la, lb]:
        await c.close()


def main():
    if not runnable(BIN):
        return 1
    redis_exe = find_program("redis-server", "/usr/bin/redis-server")
    nginx_exe = find_program("nginx", "/usr/sbin/nginx")
    if not redis_exe or not nginx_exe:
        missing = [n for n, p in (("redis-server", redis_exe), ("nginx", nginx_exe)) if not p]
        print(f"skip deployment: {' and '.join(missing)} not installed (apt-get install redis-server nginx)")
        print("0 passed, 0 failed")
        return 0
    tmp = tempfile.mkdtemp(prefix="ws6455-deploy-")
    os.chmod(tmp, 0o755)  # nginx's worker runs as nobody when started as root
    env = {"tmp": tmp, "redis_exe": redis_exe}
    nginx_workers = []
    t_start = time.monotonic()
    try:
        env["redis_port"] = free_port()
        env["redis"] = Redis(env["redis_port"], dir=tmp, exe=redis_exe)
        env["a"] = Instance("A", env["redis_port"], tmp)
        env["b"] = Instance("B", env["redis_port"], tmp)
        for x in (env["a"], env["b"]):
            st = asyncio.run(x.wait_redis(True, 10))
            check(f"instance {x.label} is up and connected to Redis (GET /stats)", st["redis"]["connected"] is True,
                  repr(st))
        check("the two instances have different ids", env["a"].id != env["b"].id, f"{env['a'].id!r}")
        env["nginx"], env["nginx_port"] = start_nginx(nginx_exe, tmp, [env["a"].port, env["b"].port])
        nginx_workers = children(env["nginx"].pid)
        try:
            asyncio.run(asyncio.wait_for(scenario(env), 240))
        except Exception as e:  # noqa: BLE001 - report, then stop everything
            check("scenario", False, f"{type(e).__name__}: {e}")
        # Clean stop: the surviving instance exits 0 on SIGTERM; then nginx and Redis.
        rc = env["a"].stop(signal.SIGTERM)
        check("instance A exits 0 on SIGTERM", rc == 0, f"rc={rc} {env['a'].log_tail()}")
        rc = env["nginx"].stop(signal.SIGQUIT)
        check("nginx stops on SIGQUIT (graceful), its worker too",
              rc == 0 and not any(os.path.exists(f"/proc/{w}") for w in nginx_workers), f"rc={rc}")
        rc = env["redis"].stop(signal.SIGTERM)
        check("redis-server stops on SIGTERM", rc == 0, f"rc={rc}")
    except Exception as e:  # noqa: BLE001
        check("setup", False, f"{type(e).__name__}: {e}")
    finally:
        stop_all()
        for w in nginx_workers:  # only if still an nginx (the master was killed before it)
            try:
                with open(f"/proc/{w}/comm") as f:
                    if f.read().strip() == "nginx":
                        os.kill(w, signal.SIGKILL)
            except OSError:
                pass
        finish(t_start, tmp)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
