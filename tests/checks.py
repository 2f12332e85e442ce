"""What every Python suite here shares: counted checks, and the closing line
"N passed, N failed" that `./run test` and CI read."""
import sys

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
