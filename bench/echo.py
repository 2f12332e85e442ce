#!/usr/bin/env python3
"""The echo benchmark over sockets: ws6455 serve (epoll, io_uring, io_uring + deflate)
beside Boost.Beast's async echo server, Node's `ws` and a plain TCP echo, all driven by
`ws6455 load` in one run.

  python3 bench/echo.py BUILD_DIR [--seconds S] [--warmup S] [--reps R] [--cases a,b]
                        [--servers a,b] [--binary] [--no-write] [--docs-dir DIR] [--load CMD]

Each server runs pinned to CPU 0 (taskset -c 0), the load generator pinned to CPU 1
(`ws6455 load --threads 1`), on 127.0.0.1 only. Every (case, server, repetition) gets a
fresh server process; repetitions are interleaved (rep 1 of every case and server, then
rep 2, ...) and the table shows medians. Per run:

- msgs/s, MiB/s (echoed payload, one way), p50/p99/p99.9/max round trip: from `load --json`.
- server CPU per message: the server's utime+stime (/proc/PID/stat, all its threads) over
  the measured window, divided by the messages echoed in it. The window is located from the
  server's side: the moment its descriptor count reaches its peak (every connection open,
  so load's warm-up starts) + --warmup, for --seconds (trimmed by 5 % at each end for
  sampling jitter; sampled every 50 ms). CPU per message = CPU rate / load's msgs/s.
  When some connections never opened, the window is counted back from load's exit.
- server peak RSS: VmHWM from /proc/PID/status at the end of the run.
- load's own CPU per message (cpu_us_per_msg, as load reports it) and its CPU share
  (cpu_us_per_msg × msgs/s): at >= 90 % of a core the generator is the bottleneck, and
  the output says so.

Options: --seconds (10) and --warmup (2) per run, --reps (3); --cases and --servers pick
subsets (names below); --binary sends binary in every case (then no deflate server);
--no-write leaves docs/ alone; --docs-dir writes benchmarks.md's section and echo.svg
elsewhere; --load replaces `BUILD_DIR/tools/ws6455 load` (a command line prefix).
Writes docs/benchmarks.md's "## Echo over sockets" section (the rest of the file is kept)
and docs/echo.svg (matplotlib; skipped with a message when it is missing).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from node_ws import node_ws_modules  # noqa: E402
HOST = "127.0.0.1"
SERVER_CPU = "0"
LOAD_CPU = "1"
CONNECT_RATE = 2000  # new connections per second (load's --connect-rate)
SAMPLE_S = 0.05
SATURATED = 0.90     # a process at >= 90 % of one core is taken as saturated
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20

# name, label, connections, in flight per connection, bytes, text (unless --binary)
CASES = [
    ("c1", "c=1 p=1 16 B", 1, 1, 16, True),
    ("c64-16", "c=64 p=16 16 B", 64, 16, 16, True),
    ("c64-4k", "c=64 p=4 4 KiB", 64, 4, 4096, True),
    ("c8-1m", "c=8 p=4 1 MiB", 8, 4, MiB, False),
    ("c10k", "c=10,000 p=1 16 B", 10000, 1, 16, True),
]
# name, label; the command lines are built in server_command().
SERVERS = [
    ("epoll", "ws6455 epoll"),
    ("io_uring", "ws6455 io_uring"),
    ("io_uring-deflate", "ws6455 io_uring deflate"),
    ("beast", "Boost.Beast"),
    ("node", "Node ws"),
    ("tcp", "plain TCP echo"),
]
WS6455 = ("epoll", "io_uring", "io_uring-deflate")
PEERS = ("beast", "node")
LABEL = dict(SERVERS)

# The targets (uWS's figures on the machine, and as ratios to Node ws).
CPU_TARGETS = [  # case, absolute µs/msg, ratio to Node's CPU per message
    ("c64-16", 0.28, 0.034),
    ("c64-4k", 1.6, 0.17),
    ("c8-1m", 170.0, 0.27),
]

_children = []  # every process we started, killed at exit


def log(msg):
    print(f"echo: {msg}", file=sys.stderr, flush=True)


def kill(p, timeout=5.0):
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass


def kill_all():
    for p in _children:
        kill(p, timeout=2.0)


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, **kw)
    _children.append(p)
    return p


def raise_nofile(want=65536):
    """Enough descriptors for 10,000 connections in both processes (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


# ---- peers -----------------------------------------------------------------------------

def node_modules():
    """Where `ws` resolves for Node (installed under /tmp/ws6455-node when needed); None to skip."""
    return node_ws_modules(lambda why: log(f"Node ws skipped: {why}"))


def version_of(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


class Setup:
    """Binaries and what is available."""

    def __init__(self, build, load_cmd):
        b = build if os.path.isabs(build) else os.path.join(ROOT, build)
        self.build = b
        self.ws6455 = os.path.join(b, "tools", "ws6455")
        self.beast = os.path.join(b, "bench", "beast_echo_server")
        self.tcp = os.path.join(b, "bench", "tcp_echo")
        self.load = shlex.split(load_cmd) if load_cmd else [self.ws6455, "load"]
        self.node_modules = None
        self.skipped = {}  # server -> why

    def check(self, servers):
        if not os.path.exists(self.ws6455):
            sys.exit(f"echo: {self.ws6455} is not built")
        probe = subprocess.run(self.load + ["--help"], capture_output=True, text=True)
        if "unknown command" in probe.stderr:
            sys.exit("echo: this ws6455 has no `load` command (rebuild with tools/load.cpp)")
        if "beast" in servers and not os.path.exists(self.beast):
            self.skipped["beast"] = "bench/beast_echo_server not built (install libboost-dev and rebuild)"
        if "tcp" in servers and not os.path.exists(self.tcp):
            self.skipped["tcp"] = "bench/tcp_echo not built"
        if "node" in servers:
            self.node_modules = node_modules()
            if not self.node_modules:
                self.skipped["node"] = "node, npm or the ws module is missing"
        for s, why in self.skipped.items():
            log(f"{LABEL[s]} skipped: {why}")


def server_command(setup, server, port):
    base = [setup.ws6455, "serve", "--host", HOST, "--port", str(port), "--mode", "echo",
            "--ping-interval", "0"]
    if server == "epoll":
        return base + ["--backend", "epoll"]
    if server == "io_uring":
        return base + ["--backend", "io_uring"]
    if server == "io_uring-deflate":
        return base + ["--backend", "io_uring", "--deflate"]
    if server == "beast":
        return [setup.beast, HOST, str(port)]
    if server == "node":
        return ["node", os.path.join(ROOT, "bench", "node_ws_echo.mjs"), HOST, str(port)]
    if server == "tcp":
        return [setup.tcp, "server", "--host", HOST, "--port", str(port)]
    raise ValueError(server)


def applies(server, case, binary):
    """Whether SERVER runs CASE; else the reason (None: it runs)."""
    name, _, conns, _, size, text = case
    text = text and not binary
    if server == "tcp":
        return None if name == "c8-1m" else "reference for the 1 MiB case only"
    if server == "io_uring-deflate":
        if not text:
            return "text cases only"
        if conns > 64:
            return "10,000 deflate contexts (~300 KB each) would need ~3 GB"
    return None


# ---- one run ---------------------------------------------------------------------------

def proc_cpu_s(pid):
    """utime + stime of the whole process (all threads), in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)
    except (OSError, IndexError, ValueError):
        return None


def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """Samples a process's CPU time every 50 ms, and its descriptor count until it reaches
    `target` (every connection open)."""

    def __init__(self, pid, target_fds):
        super().__init__(daemon=True)
        self.pid = pid
        self.target = target_fds
        self.samples = []   # (monotonic time, cpu seconds)
        self.fds = []       # (monotonic time, descriptors)
        self.stop = threading.Event()
        self.reached = False

    def run(self):
        counting = True
        while not self.stop.is_set():
            t = time.monotonic()
            c = proc_cpu_s(self.pid)
            if c is None:
                break
            self.samples.append((t, c))
            if counting:
                n = fd_count(self.pid)
                if n is not None:
                    self.fds.append((t, n))
                    counting = n < self.target
                    self.reached = self.reached or not counting
            self.stop.wait(SAMPLE_S)

    def all_open_at(self):
        """When the descriptor count first reached its peak."""
        if not self.fds:
            return None
        peak = max(n for _, n in self.fds)
        return next(t for t, n in self.fds if n == peak)

    def cpu_between(self, t0, t1):
        """CPU seconds between the samples nearest t0 and t1, and the time between them."""
        s = self.samples
        if len(s) < 2:
            return None, None
        a = min(s, key=lambda x: abs(x[0] - t0))
        b = min(s, key=lambda x: abs(x[0] - t1))
        if b[0] <= a[0]:
            return None, None
        return b[1] - a[1], b[0] - a[0]


def wait_listening(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def parse_result(out):
    out = out.strip()
    if not out:
        return None
    try:
        return json.loads(out.splitlines()[-1])
    except json.JSONDecodeError:
        pass
    res = {}
    for k, v in re.findall(r"(\w+)=(\S+)", out.splitlines()[-1]):
        try:
            res[k] = float(v)
        except ValueError:
            res[k] = v
    return res or None


_next_port = [18300]


def run_one(setup, server, case, a, env):
    """One server process, one load run: a dict of measurements, or None (why printed)."""
    name, label, conns, inflight, size, text = case
    text = text and not a.binary
    port = _next_port[0]
    _next_port[0] = 18300 + (_next_port[0] - 18300 + 1) % 1000
    srv_log = open(os.path.join(a.log_dir, f"{server}-{name}.log"), "w")
    sampler = None
    srv = spawn(["taskset", "-c", SERVER_CPU] + server_command(setup, server, port),
                stdin=subprocess.DEVNULL, stdout=srv_log, stderr=subprocess.STDOUT, env=env)
    try:
        if not wait_listening(port, srv):
            log(f"{LABEL[server]}: did not start on port {port} (see {srv_log.name})")
            return None
        time.sleep(0.2)  # let the probe connection go away
        base_fds = fd_count(srv.pid) or 0
        if server == "tcp":
            cmd = [setup.tcp, "client", "--host", HOST, "--port", str(port), "-c", str(conns),
                   "-p", str(inflight), "-s", str(size), "-t", str(a.seconds), "--warmup", str(a.warmup)]
        else:
            cmd = setup.load + [f"ws://{HOST}:{port}/", "-c", str(conns), "-p", str(inflight), "-s", str(size),
                                "--text" if text else "--binary", "-t", str(a.seconds), "--warmup", str(a.warmup),
                                "--threads", "1", "--connect-rate", str(CONNECT_RATE), "--json"]
            if server == "io_uring-deflate":
                cmd.append("--deflate")
        sampler = Sampler(srv.pid, base_fds + conns)
        sampler.start()
        t_launch = time.monotonic()
        budget = conns / CONNECT_RATE + a.warmup + a.seconds + 60
        try:
            r = subprocess.run(["taskset", "-c", LOAD_CPU] + cmd, capture_output=True, text=True,
                               timeout=budget, env=env)
        except subprocess.TimeoutExpired:
            log(f"{LABEL[server]} {label}: the load run exceeded {budget:.0f} s")
            return None
        t_done = time.monotonic()
        sampler.stop.set()
        sampler.join()
        rss_kib = proc_status_kib(srv.pid, "VmHWM")
        res = parse_result(r.stdout)
        if r.returncode != 0 or not res:
            err = r.stderr.strip().splitlines()
            log(f"{LABEL[server]} {label}: load exited {r.returncode}: {err[-1] if err else r.stdout.strip()}")
            if not res or not res.get("msgs_per_s"):
                return None
        if srv.poll() is not None:
            log(f"{LABEL[server]} {label}: the server exited ({srv.returncode}) during the run")
            return None
        # The measured window, from the server's side (see the docstring): it starts --warmup
        # after every connection is open. When some never opened (load then starts its warm-up
        # once they have failed), it is counted back from load's exit instead, less the time
        # load takes to close its connections (a guess: 50 ms + 25 µs per connection).
        m = min(0.2, 0.05 * a.seconds)
        end_bound = t_done - 0.05 - conns * 25e-6
        t_up = sampler.all_open_at()
        if sampler.reached and t_up is not None:
            w0 = t_up + a.warmup + m
            w1 = min(t_up + a.warmup + a.seconds - m, end_bound)
        else:
            w0, w1 = end_bound - a.seconds + m, end_bound - m
        cpu, dt = sampler.cpu_between(w0, w1)
        res["server"] = server
        res["case"] = name
        res["window_s"] = [round(w0 - t_launch, 3), round(w1 - t_launch, 3), round(t_done - t_launch, 3)]
        if cpu is not None and dt > 0 and res.get("msgs_per_s"):
            res["server_cpu_share"] = cpu / dt
            res["server_cpu_us_per_msg"] = cpu / dt / res["msgs_per_s"] * 1e6
        res["server_rss_mib"] = rss_kib / 1024 if rss_kib else None
        res["load_cpu_share"] = res.get("cpu_us_per_msg", 0) * res.get("msgs_per_s", 0) / 1e6
        if r.returncode != 0:
            res["load_exit"] = r.returncode
        return res
    finally:
        if sampler:
            sampler.stop.set()
        kill(srv)
        srv_log.close()


# ---- tables ----------------------------------------------------------------------------

def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(results):
    """(case, server) -> medians."""
    out = {}
    for key, runs in results.items():
        if not runs:
            continue
        m = {k: median_of(runs, k) for k in ("msgs_per_s", "MiB_per_s", "p50_us", "p99_us", "p999_us", "max_us",
                                             "server_cpu_us_per_msg", "server_cpu_share", "server_rss_mib",
                                             "cpu_us_per_msg", "load_cpu_share", "errors", "connect_failures",
                                             "connections")}
        m["runs"] = len(runs)
        out[key] = m
    return out


def fmt_num(x, digits=3):
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e4:
        return f"{x / 1e3:.0f} k"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def main_table(summary, cases, servers):
    lines = ["| case | server | msgs/s | MiB/s | p50 µs | p99 µs | server CPU µs/msg | server CPU | "
             "server peak RSS MiB | load CPU µs/msg | load CPU |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in cases:
        for s in servers:
            m = summary.get((case[0], s))
            if not m:
                continue
            sat = " **(saturated)**" if (m["load_cpu_share"] or 0) >= SATURATED else ""
            errs = "" if not m.get("errors") and not m.get("connect_failures") else \
                f" ({m.get('errors') or 0:.0f} errors, {m.get('connect_failures') or 0:.0f} connect failures)"
            lat = f"{m['p50_us']:.0f} | {m['p99_us']:.0f}" if m.get("p50_us") is not None else "– | –"
            load_cpu = f"{m['cpu_us_per_msg']:.3g}" if m.get("cpu_us_per_msg") is not None else "–"
            srv_share = f"{m['server_cpu_share'] * 100:.0f} %" if m.get("server_cpu_share") is not None else "–"
            rss = f"{m['server_rss_mib']:.1f}" if m.get("server_rss_mib") is not None else "–"
            lines.append(
                f"| {case[1]} | {LABEL[s]}{errs} | {fmt_num(m['msgs_per_s'])} | {m['MiB_per_s']:.1f} | {lat} | "
                f"{fmt_num(m.get('server_cpu_us_per_msg'))} | {srv_share} | {rss} | "
                f"{load_cpu} | {m['load_cpu_share'] * 100:.0f} %{sat} |")
    return lines


def ratio_table(summary, cases, servers):
    peers = [p for p in PEERS if p in servers]
    cols = []
    for p in peers:
        cols += [f"msgs/s × {LABEL[p]}", f"CPU/msg × {LABEL[p]}"]
    cols += ["MiB/s × plain TCP"]
    lines = ["| case | server | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for case in cases:
        for s in WS6455:
            m = summary.get((case[0], s))
            if not m or s not in servers:
                continue
            cells = []
            for p in peers:
                pm = summary.get((case[0], p), {})
                cells.append(fmt_ratio(m["msgs_per_s"], pm.get("msgs_per_s")))
                cells.append(fmt_ratio(m.get("server_cpu_us_per_msg"), pm.get("server_cpu_us_per_msg")))
            tm = summary.get((case[0], "tcp"), {})
            cells.append(fmt_ratio(m["MiB_per_s"], tm.get("MiB_per_s")))
            lines.append(f"| {case[1]} | {LABEL[s]} | " + " | ".join(cells) + " |")
    return lines


def targets_table(summary):
    lines = ["| target | measured | goal | |", "|---|---:|---:|---|"]
    label = {c[0]: c[1] for c in CASES}

    def row(what, value, goal, ok, fmt):
        if value is None:
            lines.append(f"| {what} | – | {goal} | not measured |")
        else:
            lines.append(f"| {what} | {fmt.format(value)} | {goal} | {'met' if ok(value) else 'MISSED'} |")

    for case, absolute, vs_node in CPU_TARGETS:
        node = summary.get((case, "node"), {}).get("server_cpu_us_per_msg")
        for s in ("epoll", "io_uring"):
            cpu = summary.get((case, s), {}).get("server_cpu_us_per_msg")
            row(f"{label[case]}: {LABEL[s]} server CPU/msg ÷ Node ws's", cpu / node if cpu and node else None,
                f"≤ {vs_node}×", lambda v, g=vs_node: v <= g, "{:.3f}×")
            row(f"{label[case]}: {LABEL[s]} server CPU µs/msg (uWS × 0.8, the issue's machine)", cpu,
                f"≤ {absolute:g}", lambda v, g=absolute: v <= g, "{:.3g}")
    for case in ("c64-16", "c64-4k"):
        e = summary.get((case, "epoll"), {})
        u = summary.get((case, "io_uring"), {})
        v = u["msgs_per_s"] / e["msgs_per_s"] if e.get("msgs_per_s") and u.get("msgs_per_s") else None
        sat = [LABEL[s] for s, m in ((s, summary.get((case, s), {})) for s in ("epoll", "io_uring"))
               if (m.get("load_cpu_share") or 0) >= SATURATED]
        note = f" (load saturated with {', '.join(sat)})" if sat else ""
        row(f"{label[case]}: io_uring msgs/s ÷ epoll{note}", v, "≥ 1.15×", lambda x: x >= 1.15, "{:.2f}×")
    t = summary.get(("c8-1m", "tcp"), {}).get("MiB_per_s")
    for s in ("epoll", "io_uring"):
        w = summary.get(("c8-1m", s), {}).get("MiB_per_s")
        row(f"{label['c8-1m']}: {LABEL[s]} MiB/s ÷ plain TCP echo", w / t if w and t else None, "≥ 0.5×",
            lambda x: x >= 0.5, "{:.2f}×")
    sat = sorted({f"{label[c]} ({LABEL[s]})" for (c, s), m in summary.items()
                  if s != "tcp" and (m.get("load_cpu_share") or 0) >= SATURATED})
    worst = max((m.get("load_cpu_share") or 0 for (c, s), m in summary.items() if s != "tcp"), default=None)
    lines.append(f"| load generator below {SATURATED:.0%} of its core in every run | "
                 f"{'–' if worst is None else f'{worst:.0%} at most'} | < {SATURATED:.0%} | "
                 f"{'met' if not sat else 'MISSED: ' + '; '.join(sat)} |")
    return lines


def memory_lines(summary, servers):
    """Peak RSS per connection at c=10,000 over c=1 (not idle: each holds a 16 B message in flight)."""
    rows = []
    for s in servers:
        big, one = summary.get(("c10k", s)), summary.get(("c1", s))
        if not big or not one or not big.get("server_rss_mib") or not one.get("server_rss_mib"):
            continue
        opened = big.get("connections") or 0
        if opened < 100:
            continue
        per = (big["server_rss_mib"] - one["server_rss_mib"]) * MiB / opened
        rows.append(f"| {LABEL[s]} | {opened:,.0f} | {big['server_rss_mib']:.1f} | {one['server_rss_mib']:.1f} | "
                    f"{per:,.0f} |")
    if not rows:
        return []
    return ["", "Memory per connection (for reference; the issue measured idle connections: uWS 256 B, "
            "ws6455 648 B, Node ws 5.9 KB): peak RSS at c=10,000 minus peak RSS at c=1, over the connections "
            "open.", "",
            "| server | connections | peak RSS MiB | at c=1 | bytes per connection |",
            "|---|---:|---:|---:|---:|"] + rows


# ---- the chart -------------------------------------------------------------------------

def draw_chart(summary, cases, servers, path):
    try:
        import matplotlib
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")  # Debian's python3-matplotlib
        try:
            import matplotlib
        except Exception as e:  # missing, or built for another Python
            log(f"no chart: matplotlib cannot be imported ({e}; apt-get install python3-matplotlib, "
                "and run /usr/bin/python3)")
            return False
    matplotlib.use("Agg")
    import matplotlib.ticker
    matplotlib.rcParams["svg.hashsalt"] = "ws6455"  # stable ids: diffs show data changes only
    import matplotlib.pyplot as plt

    colors = {"epoll": "#1f77b4", "io_uring": "#2ca02c", "io_uring-deflate": "#98df8a",
              "beast": "#ff7f0e", "node": "#d62728", "tcp": "#7f7f7f"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    used = [s for s in servers if any((c[0], s) in summary for c in cases)]
    for ax, key, title in ((axes[0][0], "msgs_per_s", "messages/s (higher is better)"),
                           (axes[0][1], "server_cpu_us_per_msg", "server CPU µs per message (lower is better)")):
        width = 0.8 / max(1, len(used))
        for i, s in enumerate(used):
            xs, ys = [], []
            for j, c in enumerate(cases):
                v = summary.get((c[0], s), {}).get(key)
                if v:
                    xs.append(j + (i - (len(used) - 1) / 2) * width)
                    ys.append(v)
            ax.bar(xs, ys, width, label=LABEL[s], color=colors.get(s))
        ax.set_yscale("log")
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([c[1].replace(" p=", "\np=") for c in cases], fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    # Latency: the round-trip percentiles load reports, as a percentile plot (log-log).
    for ax, cname in ((axes[1][0], "c64-16"), (axes[1][1], "c64-4k")):
        case = next((c for c in cases if c[0] == cname), None)
        if case is None:
            ax.set_visible(False)
            continue
        for s in used:
            m = summary.get((cname, s))
            if not m or m.get("p50_us") is None:
                continue
            pts = [(2, m["p50_us"]), (100, m["p99_us"]), (1000, m["p999_us"]), (10000, m["max_us"])]
            ax.plot([p for p, _ in pts], [v for _, v in pts], marker="o", label=LABEL[s], color=colors.get(s))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks([2, 100, 1000, 10000])
        ax.set_xticklabels(["p50", "p99", "p99.9", "max"])
        ax.set_ylabel("round trip µs")
        ax.set_title(f"latency, {case[1]} (lower is better)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Echo over loopback: server on CPU 0, ws6455 load on CPU 1 (medians)")
    fig.tight_layout()
    fig.savefig(path, **({"format": "svg", "metadata": {"Date": None}} if path.endswith(".svg") else {}))
    plt.close(fig)
    return True


# ---- the machine -----------------------------------------------------------------------

def machine(build):
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            model = m.group(1) if m else "?"
    except OSError:
        pass
    cxx, flags = "?", "?"
    try:
        with open(os.path.join(build, "meson-info", "intro-buildoptions.json")) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        flags = (f"meson buildtype={opts.get('buildtype')} (-O{opts.get('optimization')}), "
                 f"b_ndebug={opts.get('b_ndebug')}, cpp_args={' '.join(opts.get('cpp_args') or []) or '(none)'}")
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(os.path.join(build, "meson-info", "intro-compilers.json")) as f:
            comp = json.load(f)["host"]["cpp"]
            cxx = f"{comp.get('id')} {comp.get('full_version', comp.get('version'))}"
    except (OSError, ValueError, KeyError):
        cxx = version_of([os.environ.get("CXX", "c++"), "--version"])
    return model, os.cpu_count(), platform.release(), cxx, flags


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def boost_version():
    try:
        with open("/usr/include/boost/version.hpp") as f:
            m = re.search(r'BOOST_LIB_VERSION "([\d_]+)"', f.read())
            return m.group(1).replace("_", ".") if m else "?"
    except OSError:
        return None


def ws_version(mods):
    try:
        with open(os.path.join(mods, "ws", "package.json")) as f:
            return json.load(f).get("version", "?")
    except (OSError, ValueError, TypeError):
        return None


def write_docs(docs_dir, section):
    path = os.path.join(docs_dir, "benchmarks.md")
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    head = "\n## Echo over sockets"
    i = old.find(head)
    if i >= 0:
        j = old.find("\n## ", i + len(head))
        new = old[:i] + "\n" + section.rstrip("\n") + "\n" + (old[j:] if j >= 0 else "")
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "# Benchmarks\n\n") + section.rstrip("\n") + "\n"
    with open(path, "w") as f:
        f.write(new)
    log(f"wrote {path}")


# ---- main ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run, not measured (2)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions; the table shows medians (3)")
    ap.add_argument("--cases", default="", help="subset of: " + ",".join(c[0] for c in CASES))
    ap.add_argument("--servers", default="", help="subset of: " + ",".join(s for s, _ in SERVERS))
    ap.add_argument("--binary", action="store_true", help="binary messages in every case (no deflate server)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    ap.add_argument("--docs-dir", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--load", default="", help="load generator command prefix (default: BUILD_DIR/tools/ws6455 load)")
    ap.add_argument("--json", help="also save every run's raw measurements here")
    a = ap.parse_args()
    if a.seconds <= 0 or a.warmup < 0 or a.reps < 1:
        ap.error("--seconds > 0, --warmup >= 0, --reps >= 1")

    pick = lambda arg, names: [n for n in names if not arg or n in arg.split(",")]
    bad = [x for x in a.cases.split(",") if x and x not in [c[0] for c in CASES]] + \
          [x for x in a.servers.split(",") if x and x not in LABEL]
    if bad:
        ap.error(f"unknown case or server: {', '.join(bad)}")
    cases = [c for c in CASES if c[0] in pick(a.cases, [c[0] for c in CASES])]
    servers = pick(a.servers, [s for s, _ in SERVERS])
    if not shutil.which("taskset"):
        sys.exit("echo: taskset (util-linux) is needed to pin the processes")
    if (os.cpu_count() or 1) < 2:
        sys.exit("echo: needs two CPUs (server on CPU 0, load on CPU 1)")

    setup = Setup(a.build_dir, a.load)
    setup.check(servers)
    servers = [s for s in servers if s not in setup.skipped]
    nofile = raise_nofile()
    env = dict(os.environ)
    if setup.node_modules:
        env["WS6455_NODE_MODULES"] = setup.node_modules
    a.log_dir = os.path.join("/tmp", f"ws6455-echo-logs-{os.getpid()}")
    os.makedirs(a.log_dir, exist_ok=True)

    plan = [(case, s) for case in cases for s in servers if applies(s, case, a.binary) is None]
    for case in cases:
        for s in servers:
            why = applies(s, case, a.binary)
            if why and s != "tcp":
                log(f"{LABEL[s]} not run for {case[1]}: {why}")
    if not plan:
        sys.exit("echo: nothing to run (the plain TCP echo runs only in the c8-1m case)")
    per_run = a.warmup + a.seconds + 1.5
    est = sum(per_run + c[2] / CONNECT_RATE for c, _ in plan) * a.reps
    log(f"{len(plan)} runs × {a.reps} repetitions, about {est / 60:.0f} min; descriptors {nofile}; "
        f"server logs in {a.log_dir}")

    loadavg_before = loadavg()
    results = {(c[0], s): [] for c, s in plan}
    raw = []
    started = datetime.datetime.now()
    for rep in range(a.reps):
        for case, s in plan:
            log(f"rep {rep + 1}/{a.reps}: {case[1]}, {LABEL[s]}")
            res = run_one(setup, s, case, a, env)
            if res:
                res["rep"] = rep + 1
                results[(case[0], s)].append(res)
                raw.append(res)
                cpu = res.get("server_cpu_us_per_msg")
                p50 = "–" if res.get("p50_us") is None else f"{res['p50_us']:.0f}"
                log(f"  {res['msgs_per_s']:,.0f} msgs/s, {res.get('MiB_per_s', 0):.1f} MiB/s, "
                    f"p50 {p50} µs, server {cpu if cpu is None else f'{cpu:.3g}'} µs/msg "
                    f"({(res.get('server_cpu_share') or 0) * 100:.0f} % CPU), load "
                    f"{(res.get('load_cpu_share') or 0) * 100:.0f} % CPU")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(raw, f, indent=1)

    loadavg_after = loadavg()
    summary = summarize(results)
    model, ncpu, kernel, cxx, flags = machine(setup.build)
    bv = boost_version() if "beast" in servers else None
    wv = ws_version(setup.node_modules) if setup.node_modules else None
    peers = []
    if "beast" in servers:
        peers.append(f"Boost.Beast {bv} (bench/beast_echo_server.cpp: async_accept, async_read → async_write "
                     "of the same flat_buffer, one io_context thread, no compression, Beast's default "
                     "auto-fragment: 4 KiB frames on a large echo)")
    if "node" in servers:
        peers.append(f"Node {version_of(['node', '--version'])} with ws {wv} (bench/node_ws_echo.mjs; no "
                     "permessage-deflate; no bufferutil/utf-8-validate addons)")
    if "tcp" in servers:
        peers.append("plain TCP echo (bench/tcp_echo.cpp: epoll, recv → send of the same bytes; its own client, "
                     "8 connections × 4 MiB in flight, for the 1 MiB case only)")
    saturated = [(c[1], LABEL[s]) for c in cases for s in servers
                 if (summary.get((c[0], s), {}).get("load_cpu_share") or 0) >= SATURATED and s != "tcp"]
    sat_lines = [f"- **The load generator was saturated** (≥ {SATURATED:.0%} of CPU 1) in: "
                 + "; ".join(f"{c} with {s}" for c, s in saturated)
                 + ". There the server's msgs/s is a lower bound (its CPU per message stays valid); "
                 "`load --threads 2` would need a third core."] if saturated else []
    # Throughput cases where neither side used its core: something else limited the run.
    starved = [(c[1], LABEL[s]) for c in cases for s in servers
               if c[2] * c[3] >= 32 and (summary.get((c[0], s)) or {}).get("server_cpu_share") is not None
               and summary[(c[0], s)]["server_cpu_share"] < SATURATED
               and (summary[(c[0], s)].get("load_cpu_share") or 0) < SATURATED]
    starved_lines = [f"- **Neither side saturated its CPU** (< {SATURATED:.0%} each) in: "
                     + "; ".join(f"{c} with {s}" for c, s in starved)
                     + ". With many messages in flight one of them should be the bottleneck: other processes "
                     "took CPU time (see the load average) or the limit was elsewhere (loopback, scheduling), "
                     "so msgs/s there understates the server; CPU per message is still per message."] \
        if starved else []
    skipped = [f"- {LABEL[s]} skipped: {why}." for s, why in setup.skipped.items()]
    not_run = sorted({f"- {LABEL[s]} not run for {c[1]}: {applies(s, c, a.binary)}." for c in cases
                      for s in servers if s != "tcp" and applies(s, c, a.binary)})

    section = [
        "## Echo over sockets", "",
        f"Produced by `./run bench --echo` (bench/echo.py) on {started.strftime('%Y-%m-%d %H:%M')}: every "
        "server echoes what `ws6455 load` sends over loopback (127.0.0.1), the server pinned to CPU 0 and "
        "the load generator to CPU 1 (`taskset`, `load --threads 1`); "
        f"{a.warmup:g} s warm-up then {a.seconds:g} s measured per run, {a.reps} repetition(s) interleaved "
        "across servers, a fresh server process per run; medians.", "",
        "### Machine", "",
        f"- CPU: {model}; {ncpu} CPUs",
        f"- Kernel: {kernel}; compiler: {cxx}; {flags}",
        f"- Load average (1 min) before the run: {loadavg_before}, after: {loadavg_after} (the run itself adds "
        "about 2; more before it means other work shared the two CPUs)",
        "- Peers: " + ("; ".join(peers) if peers else "none"),
        f"- Messages: {'binary' if a.binary else 'ASCII text (UTF-8 validated by every server), binary for 1 MiB'}; "
        "load checks every echoed byte.", "",
        "### Method", "",
        "- msgs/s, MiB/s (echoed payload, one way) and round-trip percentiles come from `ws6455 load --json`.",
        "- Server CPU/msg: utime+stime of the server process (all threads, /proc/PID/stat, sampled every "
        "50 ms) over the measured window, divided by the messages echoed in it; the window starts when the "
        "server's descriptor count peaks (every connection open: load's warm-up starts) plus the warm-up, "
        "trimmed 5 % at each end (when some connections never opened: counted back from load's exit). "
        "Server CPU is that CPU time over the window's wall time (100 % = CPU 0 saturated).",
        "- Server peak RSS: VmHWM at the end of the run. Load CPU/msg: `load`'s own cpu_us_per_msg; "
        f"load CPU = that × msgs/s (≥ {SATURATED:.0%}: the generator is the bottleneck).",
        "- ws6455 serve runs with `--ping-interval 0` (the peers do not ping either).",
        ] + skipped + not_run + sat_lines + starved_lines + [
        "", "### Results", ""] + main_table(summary, cases, servers) + [
        "", "### Ratios (ws6455 ÷ peer, same run; CPU/msg below 1× is less CPU)", ""] + \
        ratio_table(summary, cases, servers) + [
        "", "### Targets (issue 11)", "",
        "uWS's figures (from the issue's machine) as ratios to Node ws measured in this run; the absolute "
        "µs rows are the issue's own numbers, for reference on a different machine.", ""] + \
        targets_table(summary) + memory_lines(summary, servers) + ["", "![echo benchmark: msgs/s, server CPU per message and latency per case and "
                                  "server](echo.svg)", ""]
    text = "\n".join(section)
    print(text)
    if not a.no_write:
        os.makedirs(a.docs_dir, exist_ok=True)
        if draw_chart(summary, cases, servers, os.path.join(a.docs_dir, "echo.svg")):
            log(f"wrote {os.path.join(a.docs_dir, 'echo.svg')}")
        write_docs(a.docs_dir, text)


if __name__ == "__main__":
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    finally:
        kill_all()
