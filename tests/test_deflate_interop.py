#!/usr/bin/python3
"""permessage-deflate interop (RFC 7692) between ws6455 and Python's websockets 10.4 and
wsproto 1.2.0 (Debian's python3-websockets / python3-wsproto), both sans-I/O.

Usage: /usr/bin/python3 tests/test_deflate_interop.py path/to/ws6455

  1. websockets and wsproto produce frame streams (both roles, with and without context
     takeover, window bits 8/9..15, messages of 0 B to 4 MiB, text and binary, some
     fragmented, a ping between fragments, a close at the end); `ws6455 decode` must
     print exactly those messages (also fed 1 byte at a time for small streams).
  2. `ws6455 encode` compresses the same messages; websockets' and wsproto's frame
     parsers must read them back.
  3. A zip bomb (1 GiB of zeros, ~1 MiB compressed) given to `ws6455 decode
     --max-message 1048576` must fail with 1009 while the child's peak RSS stays small.

PARAMS (the value of --deflate=PARAMS for `ws6455 decode` and `ws6455 encode`):
  the parameters of a permessage-deflate *response* as they would appear in a server's
  Sec-WebSocket-Extensions header after "permessage-deflate; ", i.e. a ";"-separated
  list of
      server_no_context_takeover | client_no_context_takeover
      | server_max_window_bits=N | client_max_window_bits=N        (N = 8..15)
  e.g.  --deflate='server_no_context_takeover; client_max_window_bits=10'
  Absent parameters take the RFC 7692 defaults: window 15 and context takeover, so a bare
  --deflate means 15/15 with takeover on both sides. The tool checks PARAMS with the
  client-side response validation (permessage_deflate::validate_response), so duplicates,
  unknown names and bad values are refused (exit 2). --role says which side the tool is:
  `decode --role server` reads client (masked) frames compressed with the client_*
  parameters; `encode --role server` writes server frames compressed with server_*.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib

from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPMD
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, Close, Frame
from websockets.streams import StreamReader
from wsproto.extensions import PerMessageDeflate as WpPMD
from wsproto.frame_protocol import FrameProtocol, Opcode

TOOL = sys.argv[1] if len(sys.argv) > 1 else "build/tools/ws6455"
FAILURES: list[str] = []
PASSED = 0


@dataclasses.dataclass(frozen=True)
class Params:
    sb: int = 15  # server_max_window_bits
    cb: int = 15  # client_max_window_bits
    snct: bool = False  # server_no_context_takeover
    cnct: bool = False  # client_no_context_takeover

    def arg(self) -> str:
        parts = []
        if self.snct:
            parts.append("server_no_context_takeover")
        if self.cnct:
            parts.append("client_no_context_takeover")
        if self.sb != 15:
            parts.append(f"server_max_window_bits={self.sb}")
        if self.cb != 15:
            parts.append(f"client_max_window_bits={self.cb}")
        return "--deflate=" + "; ".join(parts) if parts else "--deflate"

    def __str__(self) -> str:
        return self.arg()


# A message: ("text", str, [pieces]) or ("binary", bytes, [pieces]); one piece = one frame.
def text_of(n: int, rng: random.Random) -> str:
    words = ["websocket", "frame", "déflate", "ünïcode", "😀", "{\"id\":", "42,", "\"name\":",
             "the", "quick", "brown", "fox", "permessage", "window", "日本語", "\n"]
    out, size = [], 0
    while size < n:
        w = rng.choice(words) + " "
        out.append(w)
        size += len(w.encode())
    s = "".join(out)
    while len(s.encode()) > n:
        s = s[:-1]
    return s


def split(payload, pieces: int):
    if pieces <= 1:
        return [payload]
    step = max(1, len(payload) // pieces)
    parts = [payload[i:i + step] for i in range(0, len(payload), step)]
    return parts or [payload]


def compressible_binary(n: int, rng: random.Random) -> bytes:
    block = bytes(rng.randrange(256) for _ in range(64))
    out = bytearray()
    while len(out) < n:
        out += block if rng.random() < 0.8 else rng.randbytes(64)
    return bytes(out[:n])


def small_messages(seed: int):
    rng = random.Random(seed)
    msgs = [
        ("text", "", None),
        ("text", "Hello", None),
        ("text", "Hello", None),  # context takeover makes this f2 00 11 00 00
        ("binary", b"", None),
        ("binary", b"\x00", None),
        ("text", "héllo wörld 😀", None),
        ("text", "", None),
        ("binary", rng.randbytes(1000), None),
        ("text", text_of(10_000, rng), None),
        ("text", text_of(64 * 1024, rng), 5),
        ("binary", compressible_binary(300 * 1024, rng), 4),
        ("binary", rng.randbytes(70 * 1024), None),  # incompressible: stored blocks
        ("text", "Hello", 3),
        ("binary", b"", 2),
    ]
    return [(k, p, split(p, n or 1)) for k, p, n in msgs]


def big_messages(seed: int):
    rng = random.Random(seed)
    t = text_of(1 << 20, rng)
    b = compressible_binary(4 << 20, rng)
    t4 = text_of(4 << 20, rng)
    return [("text", t, [t]), ("binary", b, [b]), ("text", t4, split(t4, 4)), ("text", "tail", ["tail"])]


# ------------------------------------------------------------------------------------
# Python producers: a byte stream as `sender` (client frames are masked).

def websockets_ext(p: Params, local_is_client: bool, decode_only: bool = False) -> WsPMD:
    # websockets builds its compressor up front and zlib refuses raw deflate with window 8
    # ("Invalid initialization option"): a decode-only instance never compresses, so 9.
    local = (p.cb if local_is_client else p.sb)
    if decode_only:
        local = max(local, 9)
    if local_is_client:
        return WsPMD(p.snct, p.cnct, p.sb, local)  # remote = server, local = client
    return WsPMD(p.cnct, p.snct, p.cb, local)


def wsproto_ext(p: Params) -> WpPMD:
    ext = WpPMD(client_no_context_takeover=p.cnct, client_max_window_bits=p.cb,
                server_no_context_takeover=p.snct, server_max_window_bits=p.sb)
    ext._enabled = True  # as if finalize() had run after the handshake
    return ext


def websockets_stream(msgs, p: Params, sender_client: bool) -> bytes:
    ext = websockets_ext(p, sender_client)
    out = bytearray()
    for kind, _, pieces in msgs:
        for i, piece in enumerate(pieces):
            op = (OP_TEXT if kind == "text" else OP_BINARY) if i == 0 else OP_CONT
            data = piece.encode() if isinstance(piece, str) else piece
            out += Frame(op, data, fin=i == len(pieces) - 1).serialize(mask=sender_client, extensions=[ext])
            if i == 0 and len(pieces) > 1:  # a control frame between fragments: never compressed
                out += Frame(OP_PING, b"mid").serialize(mask=sender_client, extensions=[ext])
    out += Frame(OP_CLOSE, Close(1000, "bye").serialize()).serialize(mask=sender_client, extensions=[ext])
    return bytes(out)


def wsproto_stream(msgs, p: Params, sender_client: bool) -> bytes:
    proto = FrameProtocol(client=sender_client, extensions=[wsproto_ext(p)])
    out = bytearray()
    for kind, _, pieces in msgs:
        for i, piece in enumerate(pieces):
            out += proto.send_data(piece, fin=i == len(pieces) - 1)
    out += proto.close(1000, "bye")
    return bytes(out)


# ------------------------------------------------------------------------------------
# Python consumers of ws6455 encode's output.

def websockets_read(data: bytes, p: Params, sender_client: bool):
    ext = websockets_ext(p, not sender_client, decode_only=True)
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    msgs, cur, kind = [], None, None
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=sender_client, max_size=None, extensions=[ext])
        try:
            next(gen)
            raise RuntimeError("truncated frame")
        except StopIteration as stop:
            frame = stop.value
        if frame.opcode in (OP_TEXT, OP_BINARY):
            kind, cur = ("text" if frame.opcode == OP_TEXT else "binary"), bytearray(frame.data)
        elif frame.opcode == OP_CONT:
            cur += frame.data
        else:
            continue
        if frame.fin:
            msgs.append((kind, cur.decode() if kind == "text" else bytes(cur)))
    return msgs


def wsproto_read(data: bytes, p: Params, sender_client: bool):
    proto = FrameProtocol(client=not sender_client, extensions=[wsproto_ext(p)])
    proto.receive_bytes(data)
    msgs, cur = [], None
    for frame in proto.received_frames():
        # wsproto reports every piece of a message with the message's opcode.
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
            continue
        if cur is None:
            cur = [frame.opcode, "" if frame.opcode == Opcode.TEXT else b""]
        cur[1] += frame.payload
        if frame.message_finished:
            msgs.append(("text" if cur[0] == Opcode.TEXT else "binary", cur[1]))
            cur = None
    return msgs


# ------------------------------------------------------------------------------------

def check(ok: bool, what: str, detail: str = "") -> None:
    global PASSED
    if ok:
        PASSED += 1
    else:
        FAILURES.append(f"{what}: {detail}"[:600])
        print(f"FAIL {what}: {detail}"[:600], flush=True)


def run_tool(args, stdin: bytes):
    r = subprocess.run([TOOL, *args], input=stdin, capture_output=True, timeout=300)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def expected_events(msgs):
    return [(k, p) for k, p, _ in msgs]


def decoded_events(stdout: bytes):
    msgs, other = [], []
    for line in stdout.decode().splitlines():
        ev = json.loads(line)
        if ev["type"] == "text":
            msgs.append(("text", ev["data"]))
        elif ev["type"] == "binary":
            msgs.append(("binary", bytes.fromhex(ev["hex"])))
        else:
            other.append(ev)
    return msgs, other


def describe_diff(got, want) -> str:
    if len(got) != len(want):
        return f"{len(got)} messages, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"message {i} ({w[0]}, {len(w[1])} B) differs: got {g[0]} {len(g[1])} B"
    return ""


def decode_case(lib: str, msgs, p: Params, sender_client: bool, chunk: int | None = None) -> None:
    stream = (websockets_stream if lib == "websockets" else wsproto_stream)(msgs, p, sender_client)
    role = "server" if sender_client else "client"
    args = ["decode", "--role", role, p.arg()] + (["--chunk", str(chunk)] if chunk else [])
    name = f"decode {lib}->ws6455 --role {role} {p}" + (f" --chunk {chunk}" if chunk else "") + \
        f" ({len(msgs)} msgs, {len(stream)} B)"
    rc, out, err = run_tool(args, stream)
    if rc != 0:
        check(False, name, f"exit {rc}: {err}")
        return
    got, other = decoded_events(out)
    fails = [e for e in other if e["type"] == "fail"]
    closes = [e for e in other if e["type"] == "close"]
    want = expected_events(msgs)
    check(got == want and not fails and len(closes) == 1 and closes[0].get("code") == 1000, name,
          describe_diff(got, want) or f"other events: {other}")


def encode_lines(msgs) -> bytes:
    lines = []
    for kind, _, pieces in msgs:
        for i, piece in enumerate(pieces):
            ev = {"type": kind if i == 0 else "continuation"}
            if kind == "text":
                ev["data"] = piece
            else:
                ev["hex"] = piece.hex()
            if len(pieces) > 1 and i < len(pieces) - 1:
                ev["fin"] = False
            elif len(pieces) > 1 and i == 0:
                ev["fin"] = True
            lines.append(json.dumps(ev))
    return ("\n".join(lines) + "\n").encode()


def encode_case(msgs, p: Params, sender_client: bool, libs=("websockets", "wsproto")) -> None:
    role = "client" if sender_client else "server"
    name = f"encode ws6455 --role {role} {p} ->"
    rc, out, err = run_tool(["encode", "--role", role, p.arg()], encode_lines(msgs))
    if rc != 0:
        check(False, name, f"exit {rc}: {err}")
        return
    want = expected_events(msgs)
    for lib in libs:
        if lib == "wsproto" and (p.sb < 9 or p.cb < 9):
            continue  # wsproto refuses window bits 8
        try:
            got = (websockets_read if lib == "websockets" else wsproto_read)(out, p, sender_client)
        except Exception as exc:  # noqa: BLE001 - report any parser failure
            check(False, f"{name} {lib} ({len(out)} B)", f"{type(exc).__name__}: {exc}")
            continue
        check(got == want, f"{name} {lib} ({len(out)} B)", describe_diff(got, want))


# Runs `ws6455 decode ARGS < path` under a fresh, small Python so that the child's
# ru_maxrss is the tool's own: Linux counts a child's pre-exec memory too, and a child
# forked (or vforked) straight from this test would inherit its hundreds of MiB.
MEASURE = """
import json, resource, subprocess, sys
with open(sys.argv[1], "rb") as f:
    r = subprocess.run(sys.argv[2:], stdin=f, capture_output=True)
print(json.dumps({"rc": r.returncode, "out": r.stdout.decode(),
                  "maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured_decode(args, path: str):
    r = subprocess.run([sys.executable, "-S", "-c", MEASURE, path, TOOL, "decode", *args],
                       capture_output=True, check=True, timeout=300)
    res = json.loads(r.stdout)
    events = [json.loads(line) for line in res["out"].splitlines()]
    return events, res["rc"], res["maxrss"]


def zip_bomb() -> None:
    # 1 GiB of zeros in 1 MiB steps: ~1 MiB of raw deflate, as one client frame.
    comp = zlib.compressobj(wbits=-15)
    zero = bytes(1 << 20)
    parts = [comp.compress(zero) for _ in range(1024)]
    payload = b"".join(parts) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(b"\x00\x00\xff\xff")
    payload = payload[:-4]
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0xC2, 0x80 | 127]) + n.to_bytes(8, "big") + mask
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
    with tempfile.NamedTemporaryFile() as fin, tempfile.TemporaryFile() as fout:
        fin.write(header + masked)
        fin.flush()
        t0 = time.monotonic()
        events, rc, rss_kib = measured_decode(["--role", "server", "--deflate", "--max-message", "1048576"], fin.name)
        elapsed = time.monotonic() - t0
    # The same tool on a 5-byte message, for the baseline RSS.
    with tempfile.NamedTemporaryFile() as small:
        small.write(bytes([0x81, 0x85]) + bytes(4) + b"Hello")
        small.flush()
        _, _, base_kib = measured_decode(["--role", "server", "--deflate"], small.name)
    rss_mib = rss_kib / 1024
    name = f"zip bomb: {n} B inflating to 1 GiB, --max-message 1 MiB"
    print(f"  {name}: events {events}, peak RSS {rss_mib:.1f} MiB (baseline {base_kib / 1024:.1f} MiB "
          f"for a 5-byte message), {elapsed:.2f} s", flush=True)
    check(rc == 0 and len(events) == 1 and events[0]["type"] == "fail" and events[0]["code"] == 1009,
          name, f"exit {rc}, events {events}")
    check(rss_mib < 64, name + " peak RSS", f"{rss_mib:.1f} MiB")


def limit_case() -> None:
    # max_message_size bounds the inflated size exactly: equal passes, one less is 1009.
    rng = random.Random(3)
    payload = compressible_binary(1 << 20, rng)
    for lib in ("websockets", "wsproto"):
        stream = (websockets_stream if lib == "websockets" else wsproto_stream)(
            [("binary", payload, split(payload, 3))], Params(), True)
        for limit, ok in ((1 << 20, True), ((1 << 20) - 1, False)):
            rc, out, err = run_tool(["decode", "--role", "server", "--deflate", "--max-message", str(limit)], stream)
            got, other = decoded_events(out)
            other = [e for e in other if e["type"] != "ping"]
            if ok:
                good = rc == 0 and got == [("binary", payload)]
            else:
                good = rc == 0 and not got and other and other[0]["type"] == "fail" and other[0]["code"] == 1009
            check(good, f"decode {lib} 1 MiB message with --max-message {limit}", f"exit {rc} {err} {other}")


def main() -> int:
    if not os.access(TOOL, os.X_OK):
        print(f"no executable at {TOOL}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    zip_bomb()
    limit_case()
    small = small_messages(1)
    combos = []
    for bits in range(9, 16):
        for takeover in (True, False):
            combos.append(Params(bits, bits, not takeover, not takeover))
    combos += [Params(15, 9), Params(9, 15, True, False), Params(12, 10, False, True), Params(8, 8)]

    for p in combos:
        for sender_client in (True, False):
            for lib in ("websockets", "wsproto"):
                if lib == "wsproto" and (p.sb < 9 or p.cb < 9):
                    continue
                if lib == "websockets" and (p.cb if sender_client else p.sb) < 9:
                    continue  # zlib cannot compress raw deflate with window 8
                decode_case(lib, small, p, sender_client)
            encode_case(small, p, sender_client)

    # Octet-wise feeding for a couple of small streams.
    tiny = small[:8] + [small[12]]
    for p, sender_client in ((Params(), True), (Params(10, 11, True, True), False)):
        for lib in ("websockets", "wsproto"):
            decode_case(lib, tiny, p, sender_client, chunk=1)
        decode_case("websockets", small, p, sender_client, chunk=4093)

    # Big messages (1 and 4 MiB) for a few parameter sets.
    big = big_messages(2)
    for p in (Params(), Params(9, 9, True, True), Params(12, 12)):
        for sender_client in (True, False):
            for lib in ("websockets", "wsproto"):
                decode_case(lib, big, p, sender_client)
            encode_case(big, p, sender_client)

    print(f"{PASSED} checks passed, {len(FAILURES)} failed, {time.monotonic() - t0:.1f} s")
    for f in FAILURES:
        print("  " + f)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
