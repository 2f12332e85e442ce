"""Node's `ws` module for the interop suites and the echo benchmark: where
`require('ws')` resolves (NODE_PATH), installing it with npm under /tmp/ws6455-node
(outside the repository) when it is not there yet. WS6455_NODE_MODULES names another
node_modules directory to use. Standard library only."""
import os
import shutil
import subprocess

NODE_DIR = "/tmp/ws6455-node"


def node_ws_modules(say=print):
    """The node_modules directory holding ws, or None with the reason passed to `say`."""
    if not shutil.which("node"):
        say("no node")
        return None
    for base in (os.environ.get("WS6455_NODE_MODULES"), os.path.join(NODE_DIR, "node_modules")):
        if base and os.path.isfile(os.path.join(base, "ws", "package.json")):
            return base
    npm = shutil.which("npm")
    if not npm:
        say("no npm to install ws")
        return None
    os.makedirs(NODE_DIR, exist_ok=True)
    try:
        r = subprocess.run([npm, "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund", "ws"],
                           capture_output=True, text=True, timeout=180, cwd=NODE_DIR)
    except subprocess.TimeoutExpired:
        say("npm install ws timed out")
        return None
    base = os.path.join(NODE_DIR, "node_modules")
    if r.returncode != 0 or not os.path.isfile(os.path.join(base, "ws", "package.json")):
        say(f"npm install ws failed: {r.stderr.strip()[-300:]}")
        return None
    return base
