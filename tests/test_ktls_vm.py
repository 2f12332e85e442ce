#!/usr/bin/python3
"""Kernel TLS over real sockets, in a VM whose kernel has it (tests/vm/vm.py: Debian's
kernel with the tls module, booted by QEMU; the development machine's own kernel has
no tls module, where every connection stays in user-space TLS).

Inside the VM, `ws6455 serve --tls-cert ...` and `ws6455 load wss://...` (both ours:
each side's receiving is OpenSSL in user space, so each side's kernel-encrypted
records are checked by the other's OpenSSL) run an echo load in which every byte is
verified, for TLS 1.3 with AES-256-GCM (the default) and AES-128-GCM, TLS 1.2 with
AES-128-GCM and AES-256-GCM (the client limited through an OpenSSL configuration
file), epoll and io_uring, and 1 MiB messages (records split by the kernel). Each
run checks: no echo error, every client connection and every server connection
handed to kernel TLS, no TLS failure on the server (whose OpenSSL reads the clients'
kernel-made records, close_notify included, sent as a kernel alert record), and a
clean exit. One more run with WS6455_NO_KTLS=1: everything stays in user space.

Also a slow reader (tests/vm/slow_reader.cpp) that keeps the server's socket full
up to the close, with the VM's normal and with tiny send buffers.

Usage: /usr/bin/python3 tests/test_ktls_vm.py path/to/ws6455 path/to/vm_slow_reader
Skips (exit 0, one line) where the VM cannot run: no qemu, no Debian kernel.
Prints "N passed, N failed"; exits 1 on any failure.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vm"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, summary  # noqa: E402
import vm  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
SLOW_READER = os.path.abspath(sys.argv[2])

# name, backend, OpenSSL configuration for the client (None: defaults), message size, connections
CASES = [
    ("TLS 1.3 default (AES-256-GCM), epoll", "epoll", None, 4096, 4),
    ("TLS 1.3 default (AES-256-GCM), io_uring", "io_uring", None, 4096, 4),
    ("TLS 1.3 AES-128-GCM, epoll", "epoll", "tls13_aes128", 4096, 4),
    ("TLS 1.2 AES-128-GCM, io_uring", "io_uring", "tls12_aes128", 4096, 4),
    ("TLS 1.2 AES-256-GCM, epoll", "epoll", "tls12_aes256", 4096, 4),
    ("TLS 1.3 1 MiB messages, io_uring", "io_uring", None, 1 << 20, 2),
]

CONFS = {
    "tls13_aes128": "MinProtocol = TLSv1.3\nCiphersuites = TLS_AES_128_GCM_SHA256\n",
    "tls12_aes128": "MaxProtocol = TLSv1.2\nCipherString = ECDHE-ECDSA-AES128-GCM-SHA256\n",
    "tls12_aes256": "MaxProtocol = TLSv1.2\nCipherString = ECDHE-ECDSA-AES256-GCM-SHA384\n",
}

# One VM boot runs every case: the server, then the load generator against it,
# then SIGTERM; lines starting with LOAD and SERVE carry what the host checks.
SCRIPT = r"""
run() {
  name=$1; backend=$2; conf=$3; size=$4; conns=$5; env=$6
  rm -f /tmp/s.out /tmp/s.err
  env $env ws6455 serve --port 8443 --backend $backend --tls-cert /c/server.pem --tls-key /c/server.key \
      > /tmp/s.out 2> /tmp/s.err &
  spid=$!
  i=0
  while ! grep -q listening /tmp/s.out 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
  if [ "$conf" = none ]; then c=; else c=OPENSSL_CONF=/c/$conf.cnf; fi
  env $env $c ws6455 load wss://127.0.0.1:8443/ --ca /c/ca.pem --backend $backend -c $conns -p 2 -s $size \
      -t 1 --json > /tmp/l.out 2> /tmp/l.err
  lrc=$?
  echo "LOAD|$name|$lrc|$(cat /tmp/l.out)|$(tr '\n' ' ' < /tmp/l.err)"
  kill -TERM $spid
  wait $spid
  src=$?
  echo "SERVE|$name|$src|$(tr '\n' ' ' < /tmp/s.err)"
}
"""


# Chat rooms over kernel TLS: a 4 KiB message (a frame queued by reference: one
# encoding, an iovec per member) published to two members, both io_uring loops.
CHAT_SCRIPT = r"""
big=$(head -c 4000 /dev/zero | tr '\0' 'k')
ws6455 serve --mode chat --port 8444 --backend io_uring --threads 2 --tls-cert /c/server.pem \
    --tls-key /c/server.key > /tmp/c.out 2> /tmp/c.err &
cpid=$!
i=0
while ! grep -q listening /tmp/c.out 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
timeout 8 ws6455 connect wss://127.0.0.1:8444/chat/r1?name=b --ca /c/ca.pem > /tmp/b.out 2>&1 &
bpid=$!
(sleep 2; echo "{\"type\":\"chat\",\"room\":\"r1\",\"content\":\"$big\"}"; sleep 2) |
    ws6455 connect wss://127.0.0.1:8444/chat/r1?name=a --ca /c/ca.pem --close-after-stdin > /tmp/a.out 2>&1
arc=$?
wait $bpid
echo "CHAT|a=$arc|$(grep -c "\"content\":\"$big\"" /tmp/a.out)|$(grep -c "\"content\":\"$big\"" /tmp/b.out)"
kill -TERM $cpid
wait $cpid
echo "CHATSERVE|$?|$(tr '\n' ' ' < /tmp/c.err)"
"""


# A slow reader (tests/vm/slow_reader.cpp: 4 messages of 1 MiB, reading 16 KiB per
# 10 ms through a 32 KiB receive buffer) against the echo server over kernel TLS,
# whose close timeout lets the reader finish: the server writes through kernel TLS
# under backpressure and closes while the reader still lags. With the kernel's
# default buffers the send buffer grows large enough to take most of it; then once
# more with tiny send buffers (tcp_wmem), where the socket is full up to the close
# and a record often reaches TCP in pieces. Every echo byte, the close and
# close_notify must come.
SLOW_SCRIPT = r"""
slow() {
  name=$1; backend=$2
  rm -f /tmp/w.out
  ws6455 serve --port 8445 --backend $backend --tls-cert /c/server.pem --tls-key /c/server.key \
      --close-timeout 60 > /tmp/w.out 2> /tmp/w.err &
  wpid=$!
  i=0
  while ! grep -q listening /tmp/w.out 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
  echo "SLOW_CASE|$name|$(slow_reader 127.0.0.1 8445 /c/ca.pem 4 10 32768)"
  kill -TERM $wpid
  wait $wpid
  echo "SLOW_SERVE|$name|$?|$(tr '\n' ' ' < /tmp/w.err)"
}
slow epoll epoll
slow io_uring io_uring
echo "4096 8192 16384" > /proc/sys/net/ipv4/tcp_wmem
slow "epoll, small send buffers" epoll
slow "io_uring, small send buffers" io_uring
"""
SLOW_CASES = ["epoll", "io_uring", "epoll, small send buffers", "io_uring, small send buffers"]


def openssl_conf(body):
    return ("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n[tls]\n" + body)


def make_pki(d):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=ws6455 kTLS test CA")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "7",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")


def main():
    why = vm.vm_unavailable()
    if why:
        print(f"skip: no VM with kernel TLS here: {why}")
        print("0 passed, 0 failed")
        return 0
    with tempfile.TemporaryDirectory(prefix="ws6455-ktls-") as d:
        make_pki(d)
        for name, body in CONFS.items():
            with open(os.path.join(d, name + ".cnf"), "w") as f:
                f.write(openssl_conf(body))
        files = {"/bin/ws6455": BIN, "/bin/slow_reader": SLOW_READER}
        for f in ("ca.pem", "server.pem", "server.key", *(n + ".cnf" for n in CONFS)):
            files["/c/" + f] = os.path.join(d, f)
        script = SCRIPT
        for name, backend, conf, size, conns in CASES:
            script += f"run '{name}' {backend} {conf or 'none'} {size} {conns} ''\n"
        script += "run 'WS6455_NO_KTLS=1' epoll none 4096 4 WS6455_NO_KTLS=1\n"
        script += CHAT_SCRIPT
        script += SLOW_SCRIPT  # last: it shrinks the VM's send buffers
        code, out = vm.run_in_vm(files, script, timeout=240, memory_mb=512)
    text = vm.script_output(out)
    check("the VM ran the script", code == 0, out[-3000:])
    loads = {m.group(1): m for m in re.finditer(r"^LOAD\|([^|]*)\|(\d+)\|([^|]*)\|(.*)$", text, re.M)}
    serves = {m.group(1): m for m in re.finditer(r"^SERVE\|([^|]*)\|(\d+)\|(.*)$", text, re.M)}
    for name, _, _, _, conns in CASES + [("WS6455_NO_KTLS=1", None, None, None, 4)]:
        want_ktls = name != "WS6455_NO_KTLS=1"
        lm, sm = loads.get(name), serves.get(name)
        if not lm or not sm:
            check(f"{name}: ran", False, text[-2000:])
            continue
        try:
            res = json.loads(lm.group(3))
        except ValueError:
            res = {}
        check(f"{name}: every echo verified, no error (load exit {lm.group(2)})",
              lm.group(2) == "0" and res.get("errors") == 0 and res.get("msgs", 0) > 0,
              f"{lm.group(3)} {lm.group(4)}")
        check(f"{name}: the client's {conns} connections " + ("sent through kernel TLS" if want_ktls
                                                             else "stayed in user space"),
              res.get("ktls_connections") == (conns if want_ktls else 0), lm.group(3))
        sl = re.search(r"TLS: (\d+) handshakes, (\d+) sent through kernel TLS, (\d+) failed", sm.group(3))
        ok = sl is not None and int(sl.group(1)) >= conns and int(sl.group(3)) == 0 and \
            (int(sl.group(2)) == int(sl.group(1)) if want_ktls else int(sl.group(2)) == 0)
        check(f"{name}: the server: every connection " + ("sent through kernel TLS" if want_ktls else
                                                         "in user space") + ", no TLS failure, exit 0",
              ok and sm.group(2) == "0", sm.group(3))
        if res:
            print(f"     ({name}: {res.get('msgs_per_s', 0):.0f} msgs/s, {res.get('MiB_per_s', 0):.1f} MiB/s, "
                  f"under {vm.vm_accel()})")
    cm = re.search(r"^CHAT\|a=(\d+)\|(\d+)\|(\d+)$", text, re.M)
    check("chat over kernel TLS: a 4 KiB message reaches both members of the room once (a: exit 0)",
          cm is not None and cm.groups() == ("0", "1", "1"), cm.group(0) if cm else text[-2000:])
    sm = re.search(r"^CHATSERVE\|(\d+)\|.*TLS: (\d+) handshakes, (\d+) sent through kernel TLS, (\d+) failed", text,
                   re.M)
    check("chat over kernel TLS: both connections handed to kernel TLS, no failure, exit 0",
          sm is not None and sm.group(1) == "0" and sm.group(3) == "2" and sm.group(4) == "0",
          sm.group(0) if sm else text[-2000:])
    for name in SLOW_CASES:
        cm = re.search(r"^SLOW_CASE\|" + re.escape(name) + r"\|(.*)$", text, re.M)
        sm = re.search(r"^SLOW_SERVE\|" + re.escape(name) + r"\|(\d+)\|.*TLS: (\d+) handshakes, (\d+) sent through "
                       r"kernel TLS, (\d+) failed", text, re.M)
        check(f"a slow reader over kernel TLS ({name}): every echo byte, the close 1000, then close_notify",
              cm is not None and cm.group(1).startswith("SLOW|ok|") and "close_notify 1" in cm.group(1),
              cm.group(1) if cm else text[-2000:])
        check(f"a slow reader over kernel TLS ({name}): the server sent through kernel TLS, no failure, exit 0",
              sm is not None and sm.groups()[0] == "0" and sm.group(3) == "1" and sm.group(4) == "0",
              sm.group(0) if sm else text[-2000:])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
