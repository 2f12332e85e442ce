#!/usr/bin/env python3
"""Repository hygiene that a build would not catch.

Usage: test_repo_hygiene.py [path/to/ws6455]   (the tool path is ignored)
  - public headers are self-contained: every document they name is in the
    repository, and no internal types (the HTTP head scanner lives in lib/);
  - warnings are not errors in meson's defaults (a new compiler's warning must not
    break `meson setup build && ninja -C build`; ./run test turns -Dwerror=true on);
  - no coverage data (*.profraw) is committed, and it is ignored.
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
failures = 0
checks = 0


def check(name, ok, detail=""):
    global failures, checks
    checks += 1
    if ok:
        print(f"ok   {name}")
    else:
        failures += 1
        print(f"FAIL {name} {detail}")


# Documents a header points to (docs/deflate.md, README.md ...) must be in the repository.
repo_files = set()
for top, dirs, files in os.walk(ROOT):
    dirs[:] = [d for d in dirs if not d.startswith((".git", "build", "subprojects", "node_modules"))]
    repo_files.update(files)
headers = sorted((ROOT / "include").rglob("*.hpp"))
check("public headers found", len(headers) > 5, headers)
for h in headers:
    text = h.read_text(encoding="utf-8")
    rel = h.relative_to(ROOT)
    named = set(re.findall(r"[\w./-]+\.(?:md|txt|rst)\b", text))
    missing = sorted(n for n in named if pathlib.PurePosixPath(n).name not in repo_files)
    check(f"{rel}: refers to no document outside the repository", not missing, missing)
    check(f"{rel}: no internal head_scanner", "head_scanner" not in text)

meson = (ROOT / "meson.build").read_text(encoding="utf-8")
defaults = re.search(r"default_options\s*:\s*\[(.*?)\]", meson, re.S)
check("meson.build has default_options", defaults is not None)
if defaults:
    check("werror is not a default option", "werror" not in defaults.group(1), defaults.group(1))
run_script = (ROOT / "run").read_text(encoding="utf-8")
check("./run test builds with -Dwerror=true (both builds)", run_script.count("-Dwerror=true") >= 2)

ignore = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
check(".gitignore ignores *.profraw", "*.profraw" in ignore, ignore)
if (ROOT / ".git").exists():
    try:
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.profraw"], capture_output=True,
                                 text=True, timeout=30)
        if tracked.returncode == 0:
            check("no *.profraw committed", tracked.stdout.strip() == "", tracked.stdout)
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: nothing to compare

print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
