#!/usr/bin/env python3
"""`ws6455 decode --handshake`: a request (or response) head, then frames.

Usage: test_handshake_tool.py path/to/ws6455
Each input is decoded whole and with --chunk 1: the output must not change.
"""
import json
import subprocess
import sys
import zlib

TOOL = sys.argv[1]
failures = 0
checks = 0
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
MASK = bytes([1, 2, 3, 4])


def masked(op, payload, rsv=0):
    assert len(payload) < 126
    return bytes([0x80 | rsv | op, 0x80 | len(payload)]) + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def request(extra=b"", target=b"/chat?room=1"):
    return (b"GET " + target + b" HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() +
            b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def decode(data, args):
    outs = []
    for chunk in ([], ["--chunk", "1"]):
        p = subprocess.run([TOOL, "decode", *args, *chunk], input=data, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"exit {p.returncode}: {p.stderr!r}")
        outs.append(p.stdout.decode())
    if outs[0] != outs[1]:
        raise AssertionError(f"chunking changed the output: {outs}")
    return [json.loads(line) for line in outs[0].splitlines()]


# The end of input without a close frame: feed_eof()'s 1006 (RFC 6455 §7.1.5).
EOF = {"type": "close", "code": 1006, "reason": "connection closed without a close frame"}


def check(name, cond, detail=""):
    global failures, checks
    checks += 1
    if not cond:
        failures += 1
        print(f"FAIL {name} {detail}")
    else:
        print(f"ok   {name}")


# Server: accepted, frames after the head in the same input are decoded.
ev = decode(request() + masked(1, b"Hello") + masked(8, b"\x03\xe8"), ["--handshake"])
h = ev[0]
check("server 101", h["type"] == "handshake" and h["status"] == 101, ev)
check("server target", h["target"] == "/chat?room=1", h)
check("server accept key (RFC 6455 §1.3)", f"Sec-WebSocket-Accept: {ACCEPT}\r\n" in h["response"], h)
check("server response ends the head", h["response"].endswith("\r\n\r\n"), h)
check("early frames handed to the frame layer", ev[1:] == [{"type": "text", "data": "Hello"},
                                                          {"type": "close", "code": 1000, "reason": ""}], ev)

# Server: refusals carry the status and nothing follows.
ev = decode(request().replace(b"Version: 13", b"Version: 8") + masked(1, b"x"), ["--handshake"])
check("version 8 is 426", ev[0]["status"] == 426 and "Sec-WebSocket-Version: 13" in ev[0]["response"]
      and len(ev) == 1, ev)
ev = decode(request().replace(b"GET ", b"POST "), ["--handshake"])
check("POST is 405 with Allow: GET", ev[0]["status"] == 405 and "Allow: GET" in ev[0]["response"], ev)
ev = decode(request().replace(b"Host: example.com\r\n", b""), ["--handshake"])
check("no Host is 400", ev[0]["status"] == 400, ev)
ev = decode(request(b"X: " + b"a" * 9000 + b"\r\n"), ["--handshake"])
check("a 9 KiB head is 431", ev[0]["status"] == 431, ev)
ev = decode(request().replace(b"Host: example.com", b"Host: a b"), ["--handshake"])
check("an invalid Host is 400 (RFC 9112 §3.2)", ev[0]["status"] == 400 and "invalid Host" in ev[0]["response"], ev)
ev = decode(request().replace(b"HTTP/1.1", b"HTTP/2.0"), ["--handshake"])
check("HTTP/2.0 is 505 (RFC 9110 §15.6.6)", ev[0]["status"] == 505 and
      ev[0]["response"].startswith("HTTP/1.1 505 HTTP Version Not Supported\r\n"), ev)
ev = decode(request().replace(b"GET ", b"HEAD "), ["--handshake"])
check("HEAD is 405 without a body (RFC 9110 §9.3.2)", ev[0]["status"] == 405 and
      ev[0]["response"].endswith("\r\n\r\n") and "Content-Length" not in ev[0]["response"], ev)

# Subprotocols.
ev = decode(request(b"Sec-WebSocket-Protocol: chat, superchat\r\n"), ["--handshake", "--protocols", "superchat,chat"])
check("allowlist: the client's first match wins", "Sec-WebSocket-Protocol: chat\r\n" in ev[0]["response"], ev)
ev = decode(request(b"Sec-WebSocket-Protocol: mqtt\r\n"), ["--handshake", "--accept-any-protocol"])
check("accept-any echoes the first offer", "Sec-WebSocket-Protocol: mqtt\r\n" in ev[0]["response"], ev)
ev = decode(request(b"Sec-WebSocket-Protocol: mqtt\r\n"), ["--handshake", "--protocols", "chat"])
check("no match: 101 without the header", ev[0]["status"] == 101 and "Sec-WebSocket-Protocol" not in ev[0]["response"], ev)

# permessage-deflate negotiated from the offer, and the frames inflated.
c = zlib.compressobj(wbits=-15)
hello = c.compress(b"Hello") + c.flush(zlib.Z_SYNC_FLUSH)
assert hello.endswith(b"\x00\x00\xff\xff")
ev = decode(request(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n") +
            masked(1, hello[:-4], rsv=0x40), ["--handshake", "--deflate"])
check("deflate negotiated", "permessage-deflate" in ev[0]["response"], ev)
check("deflate frames inflated", ev[1:] == [{"type": "text", "data": "Hello"}, EOF], ev)
ev = decode(request() + masked(1, hello[:-4], rsv=0x40), ["--handshake", "--deflate"])
check("no offer: RSV1 is 1002", "permessage-deflate" not in ev[0]["response"] and ev[1]["code"] == 1002, ev)

# Client: the response to a request made with KEY.
def response(extra=b"", status=b"101 Switching Protocols", accept=ACCEPT.encode()):
    return (b"HTTP/1.1 " + status + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n")


ev = decode(response() + b"\x81\x02Hi", ["--role", "client", "--handshake", "--key", KEY])
check("client ok", ev[0] == {"type": "handshake", "status": 101, "ok": True}, ev)
check("client frames after the head", ev[1:] == [{"type": "text", "data": "Hi"}, EOF], ev)
ev = decode(response() + b"\x81\x05Hi", ["--role", "client", "--handshake", "--key", KEY])
check("client: a frame cut short after the head", ev[1:] == [dict(EOF, truncated="frame")], ev)
ev = decode(response() + b"\x81\x02Hi", ["--role", "client", "--handshake", "--key", KEY, "--deflate"])
check("client: deflate offered, 101 without extensions: no deflate, not an error (RFC 7692 §5)",
      ev == [{"type": "handshake", "status": 101, "ok": True}, {"type": "text", "data": "Hi"}, EOF], ev)
ev = decode(response(accept=b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="), ["--role", "client", "--handshake", "--key", KEY])
check("client: wrong accept fails", ev[0]["ok"] is False and ev[0]["reason"], ev)
ev = decode(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", ["--role", "client", "--handshake", "--key", KEY])
check("client: 401 is reported", ev[0]["status"] == 401 and ev[0]["ok"] is False, ev)
ev = decode(response(b"Sec-WebSocket-Protocol: chat\r\n"), ["--role", "client", "--handshake", "--key", KEY])
check("client: unoffered protocol fails", ev[0]["ok"] is False, ev)
ev = decode(response(b"Sec-WebSocket-Protocol: chat\r\n"),
            ["--role", "client", "--handshake", "--key", KEY, "--protocols", "chat"])
check("client: offered protocol ok", ev[0]["ok"] is True, ev)

p = subprocess.run([TOOL, "decode", "--role", "client", "--handshake"], input=b"", capture_output=True)
check("client handshake without --key is a usage error", p.returncode == 2 and p.stderr, p)

print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
