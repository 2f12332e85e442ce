"""What every Python suite here shares: counted checks, the closing line
"N passed, N failed" that `./run test` and CI read, the binary under test being
there, and reading a started server's first line (its "listening on ..."
announcement) with a time limit."""
import os
import random
import select
import sys
import time

PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED += 1
        print(f"FAIL {name} {detail}")
    sys.stdout.flush()


def run_check(name, fn, *args):
    """Runs one test function; an exception is a failure, not the end of the run."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - report and go on
        check(name, False, f"{type(e).__name__}: {e}")


def summary():
    """Prints the closing line; returns the exit status (1 on any failure)."""
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


def runnable(path):
    """Whether `path` is an executable; if not, says so and prints the closing line
    (the caller exits 1)."""
    if os.access(path, os.X_OK):
        return True
    print(f"not executable: {path}")
    print("0 passed, 1 failed")
    return False


def first_line(proc, seconds=10):
    """The first line `proc` writes to its stdout pipe (bytes, with its newline), or
    what came before `seconds` passed or the pipe closed. Reads byte by byte, so
    nothing after the line is taken from the pipe."""
    line = b""
    deadline = time.monotonic() + seconds
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            b = os.read(proc.stdout.fileno(), 1)
            if not b:
                break
            line += b
    return line


# Echo test messages: 1-, 2-, 3- and 4-byte UTF-8 sequences.
PATTERN = "héllo wörld ✓ 𝄞 ünïcödé — "


def text_of(n):
    """A str whose UTF-8 encoding is exactly n bytes: PATTERN repeated, padded with 'a'."""
    unit = len(PATTERN.encode())
    return PATTERN * (n // unit) + "a" * (n % unit)


def sized_messages(sizes):
    """For each size, a text message (text_of) and random bytes (seeded: the same every run)."""
    rnd = random.Random(6455)
    out = []
    for n in sizes:
        out.append(text_of(n))
        out.append(rnd.randbytes(n))
    return out
