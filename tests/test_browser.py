#!/usr/bin/python3
"""`ws6455 serve` against a real browser: runs tests/browser/interop.mjs.

Usage: /usr/bin/python3 tests/test_browser.py path/to/ws6455 [serve options...]

Serve options (for example `--backend io_uring --threads 2`) go to every server.

Needs node (>= 18), Chromium (/usr/bin/chromium, Debian's `chromium` package; or
WS6455_CHROMIUM) and playwright-core (npm; looked for in WS6455_NODE_MODULES, then
/tmp/ws6455-browser/node_modules: `npm install --prefix /tmp/ws6455-browser playwright-core`).
No browser is downloaded. When any of them is missing this prints why and exits 77
(meson's "skipped"). Otherwise it runs the script with a hard limit of 120 s (the
whole process group is killed past it) and exits with the script's code.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "browser", "interop.mjs")
HARD_LIMIT_S = 120
SKIP = 77


def skip(why):
    print(f"skip: {why}")
    sys.stdout.flush()
    sys.exit(SKIP)


def main():
    if len(sys.argv) < 2:
        print("usage: test_browser.py path/to/ws6455 [serve options...]", file=sys.stderr)
        return 2
    tool = os.path.abspath(sys.argv[1])
    if not os.access(tool, os.X_OK):
        print(f"FAIL {tool} is not an executable")
        return 1

    node = shutil.which("node")
    if not node:
        skip("no node on PATH")
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        skip(f"cannot tell node's version: {e}")
    if major < 18:
        skip(f"node {version} is older than 18")

    chromium = os.environ.get("WS6455_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        skip(f"no Chromium at {chromium} (apt-get install chromium)")

    candidates = [p for p in (os.environ.get("WS6455_NODE_MODULES"), "/tmp/ws6455-browser/node_modules") if p]
    modules = next((p for p in candidates if os.path.isfile(os.path.join(p, "playwright-core", "package.json"))),
                   None)
    if not modules:
        skip(f"no playwright-core in {' or '.join(candidates)} "
             "(npm install --prefix /tmp/ws6455-browser playwright-core)")

    # A private TMPDIR for the profile (mkdtemp in the script) and Chromium's own temporary
    # files: removed here even when the run had to be killed.
    tmp = tempfile.mkdtemp(prefix="ws6455-browser-")
    env = dict(os.environ, WS6455_NODE_MODULES=modules, WS6455_CHROMIUM=chromium, TMPDIR=tmp)
    print(f"# node {version}, {chromium}, playwright-core from {modules}")
    sys.stdout.flush()
    # Its own session: on timeout the whole group goes (node, Chromium and its helpers, serve).
    proc = subprocess.Popen([node, SCRIPT, tool, *sys.argv[2:]], env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=HARD_LIMIT_S)
        if rc < 0:
            print(f"FAIL node died of signal {-rc}")
        return rc if rc >= 0 else 1
    except subprocess.TimeoutExpired:
        print(f"FAIL the browser test took more than {HARD_LIMIT_S} s; killed")
        return 1
    except KeyboardInterrupt:
        return 1
    finally:
        # Whatever is left of the group goes, even after a normal exit (a PGID is not reused
        # while any member lives; with none left this is ESRCH).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # SIGKILL is not instant: let the group die (bounded) before removing its files.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
