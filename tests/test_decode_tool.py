#!/usr/bin/env python3
"""`ws6455 decode` and `ws6455 encode` as a user runs them: bytes on stdin, JSON lines out.

Usage: test_decode_tool.py path/to/ws6455
Every stream is decoded whole, with --chunk 1 and with --chunk 3: the output must not change.
"""
import json
import os
import random
import subprocess
import sys

TOOL = sys.argv[1]
failures = 0
checks = 0

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])


def masked(op, payload, fin=True, rsv=0, key=MASK):
    """A client frame (masked), minimal length form."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def run(args, data):
    p = subprocess.run([TOOL] + args, input=data, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")


def decode(data, args=()):
    outs = []
    for chunk in ([], ["--chunk", "1"], ["--chunk", "3"]):
        rc, out, err = run(["decode", *args, *chunk], data)
        if rc != 0:
            raise AssertionError(f"decode {args} {chunk} exited {rc}: {err}")
        outs.append(out)
    if len(set(outs)) != 1:
        raise AssertionError(f"chunking changed the output: {outs}")
    return [json.loads(line) for line in outs[0].splitlines()]


def check(name, got, want):
    global failures, checks
    checks += 1
    if got != want:
        failures += 1
        print(f"FAIL {name}\n  got:  {got}\n  want: {want}")
    else:
        print(f"ok   {name}")


# The end of a stream without a close frame: the connection's feed_eof() event
# (RFC 6455 §7.1.5: 1006, never on the wire), marked when the input was cut short.
EOF = {"type": "close", "code": 1006, "reason": "connection closed without a close frame"}


def cut(where):
    return dict(EOF, truncated=where)


# RFC 6455 §5.7, as the RFC spells them.
check("§5.7 unmasked text to a client", decode(bytes.fromhex("810548656c6c6f"), ["--role", "client"]),
      [{"type": "text", "data": "Hello"}, EOF])
check("§5.7 masked text to a server", decode(bytes.fromhex("818537fa213d7f9f4d5158")),
      [{"type": "text", "data": "Hello"}, EOF])
check("§5.7 fragmented text", decode(bytes.fromhex("010348656c80026c6f"), ["--role", "client"]),
      [{"type": "text", "data": "Hello"}, EOF])
check("§5.7 ping", decode(bytes.fromhex("890548656c6c6f"), ["--role", "client"]),
      [{"type": "ping", "hex": "48656c6c6f"}, EOF])
check("§5.7 masked pong", decode(bytes.fromhex("8a8537fa213d7f9f4d5158")),
      [{"type": "pong", "hex": "48656c6c6f"}, EOF])
check("§5.7 256-byte binary", decode(bytes.fromhex("827e0100") + bytes(range(256)), ["--role", "client"]),
      [{"type": "binary", "hex": bytes(range(256)).hex()}, EOF])
big = bytes(random.Random(1).randrange(256) for _ in range(65536))
check("§5.7 64 KiB binary", decode(bytes.fromhex("827f0000000000010000") + big, ["--role", "client"]),
      [{"type": "binary", "hex": big.hex()}, EOF])

# A stream cut short is reported at the end of the input, not silently dropped.
hello = bytes.fromhex("818537fa213d7f9f4d5158")
check("empty input", decode(b""), [EOF])
check("truncated: one header byte", decode(hello[:1]), [cut("frame")])
check("truncated: header without its mask key", decode(hello[:4]), [cut("frame")])
check("truncated: inside the payload", decode(hello[:-1]), [cut("frame")])
check("truncated: after a whole message, inside the next", decode(hello + hello[:7]),
      [{"type": "text", "data": "Hello"}, cut("frame")])
check("truncated: inside a 16-bit length", decode(bytes.fromhex("827e01"), ["--role", "client"]), [cut("frame")])
check("truncated: a 64 KiB frame one byte short",
      decode(bytes.fromhex("827f0000000000010000") + big[:-1], ["--role", "client"]), [cut("frame")])
check("truncated: between the fragments of a message", decode(masked(1, b"Hel", fin=False) + masked(9, b"")),
      [{"type": "ping", "hex": ""}, cut("message")])
check("a fragmented message that was completed is not truncated", decode(masked(1, b"Hel", fin=False) + masked(0, b"lo")),
      [{"type": "text", "data": "Hello"}, EOF])

# Close: with and without a body; nothing after it.
check("close with code and reason", decode(masked(8, b"\x03\xe8bye") + masked(1, b"after")),
      [{"type": "close", "code": 1000, "reason": "bye"}])
check("close without a body", decode(masked(8, b"")), [{"type": "close"}])

# Failures and their codes.
check("unmasked frame to a server is 1002", decode(bytes.fromhex("810548656c6c6f"))[0]["code"], 1002)
check("masked frame to a client is 1002", decode(masked(1, b"Hi"), ["--role", "client"])[0]["code"], 1002)
check("--accept-unmasked", decode(bytes.fromhex("810548656c6c6f"), ["--accept-unmasked"]),
      [{"type": "text", "data": "Hello"}, EOF])
check("invalid UTF-8 is 1007", decode(masked(1, b"\xf4\x90\x80\x80"))[0]["code"], 1007)
check("reserved opcode is 1002", decode(masked(3, b""))[0]["code"], 1002)
check("RSV1 without deflate is 1002", decode(masked(1, b"a", rsv=0x40))[0]["code"], 1002)
check("--max-frame", decode(masked(2, b"12345"), ["--max-frame", "4"])[0]["code"], 1009)
check("--max-message", decode(masked(2, b"123", fin=False) + masked(0, b"45"), ["--max-message", "4"])[0]["code"], 1009)
check("nothing after a fail", len(decode(masked(3, b"") + masked(1, b"x"))), 1)
check("fail has a reason", bool(decode(masked(3, b""))[0]["reason"]), True)

# JSON escaping of text.
check("text escaping", decode(masked(1, '"\\\n\t\x01é😀'.encode()))[0]["data"], '"\\\n\t\x01é😀')

# encode → decode round trip, both directions.
msgs = [{"type": "text", "data": "héllo"}, {"type": "binary", "hex": "00ff10"},
        {"type": "ping", "hex": "01"}, {"type": "text", "data": ""},
        {"type": "close", "code": 4000, "reason": "bye"}]
lines = "\n".join(json.dumps(m) for m in msgs).encode()
client_bytes = subprocess.run([TOOL, "encode", "--role", "client"], input=lines, capture_output=True).stdout
check("client encode → server decode", decode(client_bytes), msgs)
server_bytes = subprocess.run([TOOL, "encode"], input=lines, capture_output=True).stdout
check("server encode → client decode", decode(server_bytes, ["--role", "client"]), msgs)

# Usage errors exit 2 with a message on stderr and nothing on stdout.
for bad in (["--role", "middle"], ["--chunk", "0"], ["--bogus"], ["--max-frame", "x"]):
    rc, out, err = run(["decode", *bad], b"")
    check(f"usage error {bad}", (rc, out == "", err != ""), (2, True, True))
rc, out, err = run(["frobnicate"], b"")
check("unknown command", rc, 2)

# --help: usage on stdout, exit 0, nothing read.
for cmd in ("decode", "encode"):
    for flag in ("--help", "-h"):
        rc, out, err = run([cmd, flag], b"")
        check(f"{cmd} {flag}", (rc, out.startswith(f"usage: ws6455 {cmd}"), err), (0, True, ""))
rc, out, err = run(["decode", "--role", "client", "--help"], b"")
check("decode --help after other options", (rc, "truncated" in out), (0, True))

print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
