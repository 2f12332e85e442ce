#!/usr/bin/env python3
"""Self-test of tests/vm/vm.py: boots the kTLS VM and shows kernel TLS works inside it.

1. The tls ULP is listed in /proc/sys/net/ipv4/tcp_available_ulp after the module chain
   is loaded, and ulp_probe (ulp_probe.c, compiled here, dynamically linked: so the
   ldd copying is exercised too) attaches "tls" to a 127.0.0.1 TCP socket, sets TLS_TX
   with a dummy AES-GCM-128 key, and sends records through TLS_TX -> TLS_RX for each
   kTLS cipher.
2. The plumbing: the script's exit code comes back, data files and directories land
   where they were asked, the script's output is cut out by script_output().

Exit status: 0 passed, 1 failed, 77 skipped (no VM here: the reason is printed).
Usage: python3 tests/vm/selftest.py [-v]     (-v: print the whole console output)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = "-v" in sys.argv[1:]

KTLS_SCRIPT = """
ulps=$(cat /proc/sys/net/ipv4/tcp_available_ulp)
echo "tcp_available_ulp: $ulps"
case " $ulps " in *" tls "*) ;; *) echo "no tls ULP"; exit 10 ;; esac
ulp_probe -1 || exit 11
ulp_probe || exit 12
"""

PLUMBING_SCRIPT = """
test "$(cat /etc/greeting)" = "hello vm" || exit 20
test -f /srv/tree/a.txt && test -f /srv/tree/sub/b.txt || exit 21
test -x /usr/local/bin/ulp_probe || exit 22
ping -c1 -W2 127.0.0.1 >/dev/null 2>&1 || exit 23
echo plumbing-ok
exit 7
"""


def main() -> int:
    why = vm.vm_unavailable()
    if why:
        print(f"SKIP: VM unavailable: {why}")
        return 77
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("SKIP: no C compiler for ulp_probe.c")
        return 77

    passed = failed = 0

    def check(name: str, ok: bool, detail: str = ""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok: {name}")
        else:
            failed += 1
            print(f"FAIL: {name}")
            if detail:
                print(detail.rstrip())

    accel = vm.vm_accel()
    reason = vm.vm_accel_reason()
    print(f"vm: kernel {vm.find_kernel()[0]}, accelerator {accel}"
          + (f" ({reason})" if reason else ""))

    with tempfile.TemporaryDirectory(prefix="ws6455-vm-selftest-") as tmp:
        probe = os.path.join(tmp, "ulp_probe")
        subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", probe,
                        os.path.join(HERE, "ulp_probe.c")], check=True)
        host = subprocess.run([probe, "-1"], capture_output=True, text=True)
        print("host kernel, for comparison: " + host.stdout.strip().splitlines()[0])

        # 1. kTLS in the VM.
        t = time.monotonic()
        code, out = vm.run_in_vm({"/usr/local/bin/ulp_probe": probe}, KTLS_SCRIPT, timeout=60)
        took = time.monotonic() - t
        if VERBOSE:
            print(out)
        body = vm.script_output(out)
        print(f"vm: boot + kTLS probe: {took:.1f} s ({vm.vm_accel()})")
        check("tls ULP listed after insmod", "tcp_available_ulp:" in body and code != 10, out)
        check("TCP_ULP tls + TLS_TX (AES-GCM-128) on a 127.0.0.1 socket",
              code not in (-1, 10, 11) and "tls12-aes-128-gcm: TCP_ULP tls + TLS_TX ok" in body,
              out)
        check("records through TLS_TX -> TLS_RX for every kTLS cipher",
              code == 0 and body.rstrip().endswith("ulp_probe: OK"), out)

        # 2. Plumbing: files, directories, exit codes, output.
        with open(os.path.join(tmp, "greeting"), "w") as f:
            f.write("hello vm")
        os.makedirs(os.path.join(tmp, "tree", "sub"))
        for rel in ("a.txt", "sub/b.txt"):
            with open(os.path.join(tmp, "tree", rel), "w") as f:
                f.write(rel)
        t = time.monotonic()
        code, out = vm.run_in_vm({"/etc/greeting": os.path.join(tmp, "greeting"),
                                  "/srv/tree": os.path.join(tmp, "tree"),
                                  "/usr/local/bin/ulp_probe": probe},
                                 PLUMBING_SCRIPT, timeout=60)
        print(f"vm: boot + plumbing script: {time.monotonic() - t:.1f} s")
        if VERBOSE:
            print(out)
        check("files and directories copied, script exit code returned",
              code == 7 and vm.script_output(out).strip() == "plumbing-ok",
              f"exit code {code}\n{out}")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
