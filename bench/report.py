#!/usr/bin/env python3
"""Runs the ws6455 benchmark binary and prints its tables, with every ratio
(to memcpy of the same bytes, to the peers wslay and Boost.Beast) computed from
one process run.

  python3 bench/report.py BUILD_DIR [--march-native] [--repetitions N] [--min-time S]
                          [--filter REGEX] [--no-callgrind] [--write-docs] [--json FILE]

--march-native   configure and build BUILD_DIR-native with -march=native (whole project)
                 and run that instead (the default build uses runtime CPU dispatch only).
--write-docs     also rewrite docs/benchmarks.md with the tables, the machine and the date.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ["16", "125", "1K", "16K", "1M"]
KINDS = ["binary", "text_ascii", "text_mixed"]
# Receive cases measured with callgrind (instructions per frame).
CALLGRIND_CASES = [
    "ws6455/binary/whole/16", "ws6455/binary/whole/1K",
    "ws6455/text_ascii/whole/16", "ws6455/text_ascii/whole/1K", "ws6455/text_mixed/whole/1K",
    "wslay/binary/frame/16", "wslay/binary/frame/1K",
    "beast/binary/whole/16", "beast/binary/whole/1K",
]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build_native(build_dir):
    native = build_dir.rstrip("/") + "-native"
    env = dict(os.environ, CXX=os.environ.get("CXX", "g++"))
    if not os.path.exists(os.path.join(native, "build.ninja")):
        sh(["meson", "setup", native, "--buildtype=release", "-Db_ndebug=true", "-Dbench=true",
            "-Dtests=false", "-Dcpp_args=-march=native"], cwd=ROOT, env=env, stdout=sys.stderr)
    jobs = os.environ.get("WS6455_BENCH_JOBS")  # e.g. 1 on a shared machine
    sh(["ninja", "-C", native] + ([f"-j{jobs}"] if jobs else []), cwd=ROOT, stdout=sys.stderr)
    return native


def run_benchmarks(binary, reps, min_time, flt):
    cmd = [binary, "--benchmark_format=json", f"--benchmark_min_time={min_time}"]
    if reps > 1:
        cmd += [f"--benchmark_repetitions={reps}", "--benchmark_report_aggregates_only=true"]
    if flt:
        cmd.append(f"--benchmark_filter={flt}")
    print("report: running " + " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def collect(data, reps):
    """name -> {'t': seconds per iteration, counters...} (the median over repetitions)."""
    res = {}
    for b in data["benchmarks"]:
        if reps > 1 and b.get("aggregate_name") != "median":
            continue
        if b.get("error_occurred"):
            res[b["run_name"]] = {"error": b.get("error_message", "error")}
            continue
        name = b["run_name"].replace("/manual_time", "")
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        # Manual-time cases report the thread CPU time we measured as real_time; the
        # others are timed by the library: use their CPU time (the machine is shared).
        manual = "/manual_time" in b["run_name"]
        t = (b["real_time"] if manual else b["cpu_time"]) * scale
        entry = {"t": t}
        for k in ("frames", "payload_bytes", "wire_bytes", "allocs_per_frame", "clock_share", "batch"):
            if k in b:
                entry[k] = b[k]
        res[name] = entry
    return res


def clock_share(r):
    shares = [(c["clock_share"], n) for n, c in r.items() if "clock_share" in c]
    if not shares:
        return "–"
    worst = max(shares)
    return f"{worst[0] * 100:.2f}% ({worst[1]})"


def gbps(x):
    return f"{x / 1e9:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def recv_table(r):
    lines = ["| case | size | payload GB/s | Mframes/s | × memcpy | × wslay | × Beast | allocs/frame |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        modes = ["whole", "stream", "whole+copy"] + (["stream_4k_reads"] if kind == "binary" else [])
        for mode in modes:
            for size in SIZES:
                c = r.get(f"recv/ws6455/{kind}/{mode}/{size}")
                if not c or "t" not in c:
                    continue
                m = r.get(f"memcpy/{size}", {})
                w = r.get(f"recv/wslay/{kind}/frame/{size}", {})
                b = r.get(f"recv/beast/{kind}/whole/{size}", {})
                t = c["t"]
                lines.append(
                    f"| ws6455 {kind} {mode} | {size} | {gbps(c['payload_bytes'] / t)} | "
                    f"{c['frames'] / t / 1e6:.2f} | {ratio(m.get('t'), t)} | {ratio(w.get('t'), t)} | "
                    f"{ratio(b.get('t'), t)} | {c.get('allocs_per_frame', 0):.3g} |")
    for peer, mode in (("wslay", "frame"), ("beast", "whole")):
        for kind in KINDS:
            for size in SIZES:
                c = r.get(f"recv/{peer}/{kind}/{mode}/{size}")
                if not c or "t" not in c:
                    continue
                m = r.get(f"memcpy/{size}", {})
                t = c["t"]
                lines.append(f"| {peer} {kind} | {size} | {gbps(c['payload_bytes'] / t)} | "
                             f"{c['frames'] / t / 1e6:.2f} | {ratio(m.get('t'), t)} | | | |")
    for size in SIZES:
        m = r.get(f"memcpy/{size}")
        if m and "t" in m:
            lines.append(f"| memcpy of the same buffer | {size} | {gbps(m['wire_bytes'] / m['t'])} (all bytes) | "
                         f"{m['frames'] / m['t'] / 1e6:.2f} | 1.00× | | | |")
    return lines


def send_table(r):
    lines = ["| case | size | payload GB/s | Mframes/s | × memcpy | allocs/frame |", "|---|---:|---:|---:|---:|---:|"]
    for variant in ("server_writev", "server_copy", "client_masked"):
        for size in SIZES:
            c = r.get(f"send/{variant}/{size}")
            if not c or "t" not in c:
                continue
            m = r.get(f"memcpy/{size}", {})
            t = c["t"]
            # memcpy moved the receive buffer (same frames, same payload): compare per payload byte.
            mt = m.get("t", 0) * c["payload_bytes"] / m["payload_bytes"] if m else 0
            lines.append(f"| {variant} | {size} | {gbps(c['payload_bytes'] / t)} | {c['frames'] / t / 1e6:.2f} | "
                         f"{ratio(mt, t)} | {c.get('allocs_per_frame', 0):.3g} |")
    return lines


NATIVE_LABELS = {"native_bytes": "reference: byte loop, -march=native",
                 "native_words": "reference: 8-byte-word loop (uWS's shape), -march=native"}


def mask_table(r):
    impls = ["scalar", "portable", "sse2", "avx2", "avx512", "dispatch", "native_bytes", "native_words"]
    sizes = ["16", "125", "1K", "16K", "256K"]
    lines = ["| mask in place, GB/s (1 byte off alignment) | " + " | ".join(sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for impl in impls:
        cells = []
        for s in sizes:
            c = r.get(f"mask/{impl}/{s}")
            cells.append(gbps(c["payload_bytes"] / c["t"]) if c and "t" in c else "–")
        if any(x != "–" for x in cells):
            lines.append(f"| {NATIVE_LABELS.get(impl, impl)} | " + " | ".join(cells) + " |")
    # The yardstick: our best kernel against the compiler's best on the plain loop.
    cells = []
    for s in sizes:
        d, n = r.get(f"mask/dispatch/{s}"), r.get(f"mask/native_words/{s}")
        cells.append(ratio(n.get("t"), d.get("t")) if d and n and "t" in d and "t" in n else "–")
    if any(x != "–" for x in cells):
        lines.append("| dispatch × the -march=native word loop | " + " | ".join(cells) + " |")
    copy_sizes = ["125", "1K", "16K"]
    lines += ["", "| mask_copy, GB/s (src 1, dst 2 bytes off alignment) | " + " | ".join(copy_sizes) + " |",
              "|---|" + "---:|" * len(copy_sizes)]
    for impl in ["portable", "sse2", "avx2", "avx512", "dispatch"]:
        cells = []
        for s in copy_sizes:
            c = r.get(f"mask_copy/{impl}/{s}")
            cells.append(gbps(c["payload_bytes"] / c["t"]) if c and "t" in c else "–")
        if any(x != "–" for x in cells):
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    return lines


def utf8_table(r):
    impls = ["scalar", "portable", "ssse3", "avx2", "avx512", "dispatch"]
    texts = ["ascii", "greek", "cjk", "emoji", "mixed", "invalid_late"]
    m = r.get("memcpy/1K", {})
    lines = ["| UTF-8 validation, 256 KiB, GB/s | " + " | ".join(impls) + " | dispatch × scalar | dispatch × memcpy |",
             "|---|" + "---:|" * (len(impls) + 2)]
    for text in texts:
        cells = []
        for impl in impls:
            c = r.get(f"utf8/{text}/{impl}")
            cells.append(gbps(c["payload_bytes"] / c["t"]) if c and "t" in c else "–")
        s = r.get(f"utf8/{text}/scalar", {})
        d = r.get(f"utf8/{text}/dispatch", {})
        mem = (m["wire_bytes"] / m["t"]) if m else 0
        dx = (d["payload_bytes"] / d["t"]) if d else 0
        vs_mem = f"{dx / mem:.2f}×" if mem and dx else "–"
        lines.append(f"| {text} | " + " | ".join(cells) + f" | {ratio(s.get('t'), d.get('t'))} | {vs_mem} |")
    return lines


def targets(r):
    out = []

    def rt(a, b):
        ca, cb = r.get(a), r.get(b)
        if not ca or not cb or "t" not in ca or "t" not in cb:
            return None
        return cb["t"] / ca["t"]

    def line(label, value, goal, fmt="{:.2f}×"):
        if value is None:
            out.append(f"| {label} | – | {goal} | not measured |")
        else:
            ok = value >= goal
            out.append(f"| {label} | {fmt.format(value)} | ≥ {fmt.format(goal)} | {'met' if ok else 'MISSED'} |")

    out += ["| target | measured | goal | |", "|---|---:|---:|---|"]
    for s in ("1K", "16K", "1M"):
        line(f"binary receive {s} vs memcpy", rt(f"recv/ws6455/binary/whole/{s}", f"memcpy/{s}"), 1.0)
    line("16 B frames/s vs wslay", rt("recv/ws6455/binary/whole/16", "recv/wslay/binary/frame/16"), 10.0)
    line("16 B frames/s vs wslay (ws6455 +copy)", rt("recv/ws6455/binary/whole+copy/16", "recv/wslay/binary/frame/16"), 10.0)
    for s in ("16K", "1M"):
        line(f"text ASCII receive {s} vs memcpy", rt(f"recv/ws6455/text_ascii/whole/{s}", f"memcpy/{s}"), 0.6)
    for name, label in (("utf8/mixed/dispatch", "mixed-script UTF-8 validation"),
                        ("recv/ws6455/text_mixed/whole/16K", "mixed-script text receive 16K"),
                        ("recv/ws6455/text_mixed/whole/1M", "mixed-script text receive 1M")):
        c = r.get(name)
        line(label + " GB/s", c["payload_bytes"] / c["t"] / 1e9 if c and "t" in c else None, 3.0, "{:.2f}")
    for s in ("1K", "16K"):
        line(f"unmask {s}: dispatch vs the -march=native word loop",
             rt(f"mask/dispatch/{s}", f"mask/native_words/{s}"), 2.0)
    allocs = [c.get("allocs_per_frame", 0) for n, c in r.items()
              if n.startswith("recv/ws6455/") and "/whole/" in n and "t" in c]
    if allocs:
        worst = max(allocs)
        out.append(f"| allocations per frame, receive, whole-frame mode (worst case) | {worst:.3g} | 0 | "
                   f"{'met' if worst == 0 else 'MISSED'} |")
    return out


def callgrind(binary):
    if not shutil.which("valgrind"):
        return ["(valgrind not installed: no instruction counts)"]
    lines = ["| case | instructions per frame |", "|---|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for case in CALLGRIND_CASES:
            outf = os.path.join(tmp, "cg.out")
            p = subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no",
                                f"--callgrind-out-file={outf}", binary, "--ipf", case, "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            m = re.search(r"frames (\d+)", p.stdout)
            total = None
            if os.path.exists(outf):
                with open(outf) as f:
                    for ln in f:
                        if ln.startswith("totals:") or ln.startswith("summary:"):
                            total = int(ln.split()[1])
                os.remove(outf)
            if p.returncode != 0 or not m or total is None:
                lines.append(f"| {case} | (not run: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'no data'}) |")
                continue
            lines.append(f"| {case} | {total / int(m.group(1)):.0f} |")
    return lines


def cpu_model():
    """/proc/cpuinfo's "model name" (ratios differ by CPU: print it with every table)."""
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def cpu_ids():
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(re.findall(r"^(cpu family|model|stepping)\s*:\s*(.*)$", f.read(), re.M))
        return f"family {info.get('cpu family', '?')} model {info.get('model', '?')}"
    except OSError:
        return "?"


def machine(context):
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        info = dict(re.findall(r"^([^:]+):\s+(.*)$", out, re.M))
        model = info.get("Model name", model)
        cores = f"{info.get('CPU(s)', '?')} CPUs ({info.get('Core(s) per socket', '?')} cores/socket, " \
                f"{info.get('Thread(s) per core', '?')} threads/core)"
        caches = f"L1d {info.get('L1d cache', '?')}, L2 {info.get('L2 cache', '?')}, L3 {info.get('L3 cache', '?')}"
    except OSError:
        cores, caches = "?", "?"
    try:
        cxx = subprocess.run([os.environ.get("CXX", "g++"), "--version"], stdout=subprocess.PIPE,
                             text=True).stdout.splitlines()[0]
    except OSError:
        cxx = "?"
    return [f"- CPU: {cpu_model()} ({cpu_ids()}; lscpu: {model}); {cores}; {caches}",
            f"- Kernel: {platform.system()} {platform.release()}; compiler: {cxx}",
            f"- ws6455 SIMD level picked at run time: {context.get('ws6455_simd', '?')}",
            f"- Peers: wslay {context.get('peer_wslay', '?')}; Boost.Beast {context.get('peer_beast', '?')}",
            f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir")
    ap.add_argument("--march-native", action="store_true")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--filter", default="")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--json", help="also save the raw Google Benchmark JSON here")
    a = ap.parse_args()

    build = a.build_dir
    if a.march_native:
        build = build_native(build)
    binary = os.path.join(ROOT, build, "bench", "ws6455_bench") if not os.path.isabs(build) \
        else os.path.join(build, "bench", "ws6455_bench")
    if not os.path.exists(binary):
        sys.exit(f"report: {binary} not built (is libbenchmark-dev installed?)")

    data = run_benchmarks(binary, a.repetitions, a.min_time, a.filter)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(data, f, indent=1)
    r = collect(data, a.repetitions)
    ctx = data.get("context", {})

    flags = "-O3 -march=native (--march-native)" if a.march_native else "-O3, baseline x86-64 + runtime dispatch"
    doc = ["# Benchmarks", "",
           "Produced by `./run bench` (bench/report.py). Every ratio is computed from one process run: "
           "memcpy of the same buffer, wslay and Boost.Beast parsing the same bytes.", "",
           "## Machine", ""] + machine(ctx) + [
           f"- Build: meson release ({flags}); {a.repetitions} repetitions, medians",
           "- Clock: the receive/send/memcpy cases time batches of passes. Short batches read CLOCK_MONOTONIC "
           f"({float(ctx.get('clock_ns', 'nan')):.1f} ns per read, in the vDSO), and a batch during which the "
           "thread was preempted (getrusage's involuntary context switches, read outside the timed interval) is "
           "retaken, so the shared machine does not inflate wall time; batches of 74 µs or more read "
           f"CLOCK_THREAD_CPUTIME_ID ({float(ctx.get('cpu_clock_ns', 'nan')):.0f} ns per read, a system call). "
           "Every batch is at least 200 reads of its clock long: the clock is under 1% of a measurement "
           f"(worst this run: {clock_share(r)}). Binary receive passes repeat over the same buffer (they only "
           "XOR payloads, checked at setup) and +copy passes restore their own input; text passes need an "
           "untimed restore, so they are timed one at a time (2.5 µs or more each). Before this, every pass "
           "was timed alone with CLOCK_THREAD_CPUTIME_ID, whose ~370 ns pulled short passes toward 1×. "
           "The other cases are timed by Google Benchmark (its CPU time over many iterations).",
           "", "## Method", "",
           "- Receive: a buffer of back-to-back masked client frames (max(1, 256 KiB / frame) frames; "
           "1 frame for 1 MiB), server role, fed to `connection::feed` with a 256-event array until consumed; "
           "every event is read. ws6455 unmasks in place, so before each timed pass the masked bytes are "
           "restored by a memcpy from a pristine copy, outside the timing. `whole+copy` times that memcpy "
           "too: it is the copy the peers make, since they pull bytes through a read callback into their own "
           "buffer (recv(2)'s copy), so `whole+copy` is the like-for-like peer comparison.",
           "- `stream` is delivery::streaming over the same buffer; `stream_4k_reads` feeds it in 4 KiB reads "
           "(frames split across reads).",
           "- wslay: `wslay_frame_recv` with an in-memory recv callback (frame API: no UTF-8 validation, "
           "byte-at-a-time unmasking). Beast: `websocket::stream` (server) over an in-memory sync stream, "
           "`read()` into a reused flat_buffer (validates UTF-8).",
           "- × memcpy = memcpy time of the same buffer / case time (≥ 1 is faster than copying the bytes once). "
           "× peer = peer time / ws6455 time on the same buffer.",
           "- Send: as many frames per iteration as the receive buffer holds. `server_writev` = "
           "`encode_frame_header` + the caller's payload as a second iovec (no copy); `server_copy` = "
           "`send_binary` into the output buffer, drained every 64 KiB; `client_masked` = `send_binary` in the "
           "client role: header + masked copy with a fresh key per frame.",
           "- allocs/frame: global operator new is replaced in the benchmark binary and counted over the timed passes.",
           "", "## Receive", "", f"CPU: {cpu_model()}.", ""] + recv_table(r) + ["", "## Send", ""] + send_table(r) + \
          ["", "## Masking alone", "", f"CPU: {cpu_model()}.", ""] + mask_table(r) + \
          ["", "## UTF-8 validation alone", "", f"CPU: {cpu_model()}.", ""] + utf8_table(r) + \
          ["", "## Targets", "", f"CPU: {cpu_model()}.", ""] + targets(r)
    if not a.no_callgrind:
        doc += ["", "## Instructions per frame (valgrind --tool=callgrind)", "",
                "Collection is on only around the parse passes (`ws6455_bench --ipf CASE 2`); "
                "the restore memcpy is outside. Peers include their read-callback copy.", ""] + callgrind(binary)
    text = "\n".join(doc) + "\n"
    print(text)
    if a.write_docs:
        os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        # A hand-written "## Notes" section (analysis of the numbers) survives regeneration.
        notes = ""
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
            i = old.find("\n## Notes")
            if i >= 0:
                notes = old[i:]
        with open(path, "w") as f:
            f.write(text + notes)
        print("report: wrote docs/benchmarks.md", file=sys.stderr)


if __name__ == "__main__":
    main()
