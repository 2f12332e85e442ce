"""Run programs inside a small QEMU VM whose kernel has kernel TLS (the `tls` ULP).

The development machine's own kernel may have no `tls` module (setsockopt(TCP_ULP,
"tls") fails with ENOENT there). This module boots Debian's distribution kernel
(linux-image-amd64, CONFIG_TLS=m) with a throwaway initramfs written here, in Python
(newc cpio, uncompressed): busybox-static, the tls module and the crypto modules kTLS
asks the kernel for, the files the caller names (ELF files with every shared library
`ldd` lists and the dynamic loader), and an /init that runs the caller's shell script,
prints its exit code behind a marker and powers off.

    import sys; sys.path.insert(0, "tests/vm")
    from vm import run_in_vm, vm_unavailable, script_output

    why = vm_unavailable()
    if why:
        skip(why)
    code, out = run_in_vm({"/bin/ws6455": "build/tools/ws6455", "/etc/cert.pem": cert},
                          "ws6455 serve ... & sleep 1; ws6455 ...", timeout=60)
    assert code == 0, out

What the VM has: busybox's applets on PATH (sh, ip, nc, timeout, sleep, kill, grep,
ping...), /proc, /sys, /dev (devtmpfs, devpts, /dev/shm), a writable root in RAM (/tmp,
/root, the cwd), `lo` up (127.0.0.1, ::1), /etc/hosts (localhost), /etc/passwd, no
other network, no disk, no Python, one vCPU unless smp= says more, memory_mb of RAM.
The script runs as root with /bin/sh (busybox ash), stdin /dev/null; its stdout and
stderr go to the serial console, which is what `output` holds: the kernel's few boot
lines (warnings only: "quiet"), then the script's output between two markers
(`script_output()` cuts that part out), then a "[vm: ...]" line if something went wrong.
Modules loaded before the script: DEFAULT_MODULES (lsmod shows them); busybox's
/sbin/modprobe and a trimmed modules.dep/modules.alias serve the kernel's own module
requests for those modules (e.g. after an rmmod).

Accelerator: KVM (-enable-kvm -cpu host) when /dev/kvm opens and answers, else TCG
(-cpu max: AES-NI, PCLMUL, AVX2 emulated, so the same crypto modules load). A KVM boot
that aborts or does not reach /init within 30 s is retried once under TCG and TCG is
used for the rest of the process (the output's first line says so). Under TCG the
`timeout` is multiplied by TCG_TIMEOUT_FACTOR, and CPU-bound work is slow: ~5x for
plain code, ~75x for AES-GCM (openssl speed: 70 MB/s against 5 GB/s on the host).

Speed: the kernel is booted as the uncompressed ELF vmlinux (extracted once from the
xz bzImage with lzma, cached in ~/.cache/ws6455-vm/, ~66 MB) through qemu's PVH entry
and qboot instead of SeaBIOS; measured under TCG: 1.5-1.8 s from run_in_vm() to the
script's end for a short script (4.5 s with the bzImage and SeaBIOS).

ensure_vm_packages() -- there is no such function on purpose: installing is the ./run
script's job (root, Debian 12). The packages this module needs:

    apt-get install -y --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static

(qemu-system-x86 brings qemu-system-data with qboot.rom; ldd is libc-bin's; selftest.py
needs a C compiler and linux-libc-dev's <linux/tls.h>). linux-image-amd64 pulls
initramfs-tools and spends about a minute generating /boot/initrd.img-*, unused here.

Environment knobs (all optional):
    WS6455_VM_ACCEL=kvm|tcg   force the accelerator (kvm: no fallback to TCG)
    WS6455_VM_KERNEL=/boot/vmlinuz-<ver>   use that kernel (modules in /lib/modules/<ver>)
    WS6455_VM_KEEP=1          keep the temporary directory with the initramfs and print it
"""

from __future__ import annotations

import fcntl
import glob
import gzip
import lzma
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time

__all__ = ["run_in_vm", "vm_unavailable", "vm_accel", "script_output", "find_kernel",
           "vm_accel_reason", "DEFAULT_MODULES", "TCG_TIMEOUT_FACTOR"]

# Loaded (with their modules.dep dependencies) in this order. `tls` is required; the
# crypto modules are what kTLS's crypto_alloc_aead("gcm(aes)" / "ccm(aes)" /
# "rfc7539(chacha20,poly1305)") needs on Debian's kernel, where they are modules too.
# The x86 SIMD ones may fail on a CPU without the instructions; the generic ones cover.
REQUIRED_MODULES = ("tls",)
DEFAULT_MODULES = (
    "tls",
    "ctr", "gcm", "ccm", "ghash_generic", "ghash_clmulni_intel", "aesni_intel",
    "chacha_generic", "chacha_x86_64", "poly1305_generic", "poly1305_x86_64",
    "chacha20poly1305",
)

# Without KVM the same boot is emulated (TCG): the timeout given is multiplied by this.
TCG_TIMEOUT_FACTOR = 5

# cryptomgr.notests: the crypto self-tests at boot and at each crypto module's insmod
# cost ~0.2 s emulated; the algorithms are Debian's, tested there.
_KERNEL_APPEND = "console=ttyS0 quiet panic=-1 cryptomgr.notests"
# qboot (qemu-system-data) starts a kernel faster than SeaBIOS; used when present.
_QBOOT = "/usr/share/qemu/qboot.rom"
# With KVM, a boot that has not reached /init after this long is taken as KVM not
# working here (e.g. a nested hypervisor that cannot run a stock kernel): TCG then.
_KVM_START_DEADLINE = 30.0
_LD_DEFAULT_DIRS = {"/lib", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                    "/lib64", "/usr/lib64"}
_KVM_GET_API_VERSION = 0xAE00


# ---------------------------------------------------------------- host discovery

def _version_key(ver: str):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+~]", ver)]


def _tls_ko(moddir: str) -> str | None:
    for ext in ("", ".xz", ".zst", ".gz"):
        p = os.path.join(moddir, "kernel/net/tls/tls.ko" + ext)
        if os.path.exists(p):
            return p
    return None


def find_kernel() -> tuple[str, str] | None:
    """(vmlinuz path, /lib/modules/<ver>) of Debian's newest -amd64 kernel that has tls.ko."""
    forced = os.environ.get("WS6455_VM_KERNEL")
    if forced:
        ver = os.path.basename(forced).removeprefix("vmlinuz-")
        return forced, f"/lib/modules/{ver}"
    found = []
    for path in glob.glob("/boot/vmlinuz-*-amd64"):
        ver = os.path.basename(path)[len("vmlinuz-"):]
        moddir = f"/lib/modules/{ver}"
        if _tls_ko(moddir) and os.path.exists(os.path.join(moddir, "modules.dep")):
            found.append((_version_key(ver), path, moddir))
    if not found:
        return None
    found.sort()
    return found[-1][1], found[-1][2]


def _busybox() -> str | None:
    """busybox-static's binary (the dynamically linked `busybox` package's won't do)."""
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if not os.path.exists(p):
            continue
        try:
            r = subprocess.run(["ldd", p], capture_output=True, text=True)
        except OSError:
            return None
        if "not a dynamic executable" in r.stdout + r.stderr or "statically linked" in r.stdout:
            return p
    return None


def _kvm_problem() -> str:
    """Why KVM cannot run a stock kernel here, or "" when it looks usable."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    try:
        if fcntl.ioctl(fd, _KVM_GET_API_VERSION) != 12:
            return "/dev/kvm: unexpected KVM API version"
    except OSError as e:
        return f"/dev/kvm: {e.strerror}"
    finally:
        os.close(fd)
    # PVM (kvm_pvm, a KVM without VT-x/AMD-V for nested guests) only runs guest kernels
    # built for it; qemu -cpu host aborts there and a Debian kernel hangs.
    if (os.path.isdir("/sys/module/kvm_pvm") and not os.path.isdir("/sys/module/kvm_intel")
            and not os.path.isdir("/sys/module/kvm_amd")):
        return "/dev/kvm is PVM (kvm_pvm), which cannot run a stock kernel"
    return ""


_kvm_failed_here = ""  # set when a KVM boot failed in this process: TCG from then on


def vm_accel() -> str:
    """'kvm' or 'tcg': what run_in_vm will use here (WS6455_VM_ACCEL overrides)."""
    forced = os.environ.get("WS6455_VM_ACCEL", "").lower()
    if forced in ("kvm", "tcg"):
        return forced
    return "tcg" if (_kvm_failed_here or _kvm_problem()) else "kvm"


def vm_accel_reason() -> str:
    """Why run_in_vm runs emulated (TCG) here, or "" when it uses KVM."""
    if os.environ.get("WS6455_VM_ACCEL", "").lower() == "tcg":
        return "WS6455_VM_ACCEL=tcg"
    if os.environ.get("WS6455_VM_ACCEL", "").lower() == "kvm":
        return ""
    return _kvm_failed_here or _kvm_problem()


def vm_unavailable() -> str:
    """Why run_in_vm cannot work on this machine, or "" when it can.

    A missing /dev/kvm is not a reason: the VM then runs emulated (TCG), slower."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not installed (Debian package qemu-system-x86)"
    kernel = find_kernel()
    if not kernel:
        return ("no Debian kernel with net/tls/tls.ko (/boot/vmlinuz-*-amd64 and "
                "/lib/modules/<ver>; Debian package linux-image-amd64)")
    if not os.access(kernel[0], os.R_OK):
        return f"{kernel[0]} is not readable"
    if not shutil.which("ldd"):
        return "ldd not found (Debian package libc-bin)"
    if not _busybox():
        return "no static busybox (Debian package busybox-static)"
    return ""


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ws6455-vm")


def _boot_image(kernel: str, scratch: str) -> str:
    """The uncompressed ELF vmlinux inside Debian's bzImage (xz), cached; else the bzImage.

    qemu starts an ELF vmlinux through its PVH entry point (CONFIG_PVH=y): no real-mode
    setup, no in-guest decompression. Emulated, that halves the boot (4.3 s -> 1.7 s)."""
    st = os.stat(kernel)
    name = f"vmlinux-{os.path.basename(kernel)}-{st.st_size}-{int(st.st_mtime)}"
    for d in (_cache_dir(), scratch):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    with open(kernel, "rb") as f:
        data = f.read()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        return kernel
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError:
        return kernel
    if elf[:4] != b"\x7fELF" or b"Xen" not in elf:  # the PVH note is a Xen ELF note
        return kernel
    for d in (_cache_dir(), scratch):
        try:
            os.makedirs(d, exist_ok=True)
            p = os.path.join(d, name)
            tmp = f"{p}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(elf)
            os.replace(tmp, p)
            for old in glob.glob(os.path.join(d, "vmlinux-*")):
                if old != p and not old.endswith(".tmp"):
                    try:
                        os.unlink(old)  # another kernel's, or a stale build of it
                    except OSError:
                        pass
            return p
        except OSError:
            continue
    return kernel


# ---------------------------------------------------------------- modules

def _modname(path: str) -> str:
    base = os.path.basename(path)
    base = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", base)
    return base.replace("-", "_")


def _read_modules_dep(moddir: str) -> dict[str, tuple[str, list[str]]]:
    """module name -> (relative path, [relative paths of its dependencies])."""
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            if ":" not in line:
                continue
            path, rest = line.split(":", 1)
            deps[_modname(path)] = (path.strip(), rest.split())
    return deps


def _module_chain(moddir: str, names) -> list[tuple[str, str]]:
    """[(name, relative path)] for `names` and their dependencies, dependencies first."""
    table = _read_modules_dep(moddir)
    by_path = {p: n for n, (p, _) in table.items()}
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str):
        if name in seen:
            return
        seen.add(name)
        path, deps = table[name]
        for d in deps:
            visit(by_path.get(d, _modname(d)))
        order.append((name, path))

    for n in names:
        n = n.replace("-", "_")
        if n not in table:
            if n in REQUIRED_MODULES:
                raise FileNotFoundError(f"module {n} not in {moddir}/modules.dep")
            continue  # built in, or not built for this kernel
        visit(n)
    return order


def _module_bytes(path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(open(path, "rb").read())
    if path.endswith(".gz"):
        return gzip.decompress(open(path, "rb").read())
    if path.endswith(".zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise RuntimeError(f"{path} is zstd-compressed and zstd is not installed")
        return subprocess.run([zstd, "-dc", path], check=True, capture_output=True).stdout
    return open(path, "rb").read()


# ---------------------------------------------------------------- initramfs (newc cpio)

class _Tree:
    """The initramfs's entries: path -> (kind, mode, payload). Later adds replace."""

    def __init__(self):
        self.entries: dict[str, tuple[str, int, object]] = {}

    def _parents(self, path: str):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = ("dir", 0o755, None)

    def dir(self, path: str, mode=0o755):
        self._parents(path)
        self.entries[path] = ("dir", mode, None)

    def file(self, path: str, host_path: str | None = None, data: bytes | None = None,
             mode: int | None = None):
        self._parents(path)
        if mode is None:
            mode = (os.stat(host_path).st_mode & 0o777) if host_path else 0o644
        self.entries[path] = ("file", mode, host_path if data is None else data)

    def symlink(self, path: str, target: str):
        self._parents(path)
        self.entries[path] = ("symlink", 0o777, target)

    def chardev(self, path: str, major: int, minor: int, mode=0o600):
        self._parents(path)
        self.entries[path] = ("chr", mode, (major, minor))

    def write_cpio(self, out_path: str):
        ino = 1

        def header(f, name, mode, size, rdev=(0, 0), nlink=1):
            nonlocal ino
            nb = name.encode() + b"\0"
            h = "070701" + "".join(f"{v:08X}" for v in (
                ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(nb), 0))
            ino += 1
            f.write(h.encode() + nb)
            f.write(b"\0" * (-(110 + len(nb)) % 4))

        with open(out_path, "wb") as f:
            # Sorted: every directory comes before what is in it.
            for path in sorted(self.entries, key=lambda p: p.strip("/").split("/")):
                kind, mode, payload = self.entries[path]
                name = path.lstrip("/")
                if kind == "dir":
                    header(f, name, stat.S_IFDIR | mode, 0, nlink=2)
                elif kind == "symlink":
                    target = payload.encode()
                    header(f, name, stat.S_IFLNK | 0o777, len(target))
                    f.write(target + b"\0" * (-len(target) % 4))
                elif kind == "chr":
                    header(f, name, stat.S_IFCHR | mode, 0, rdev=payload)
                else:
                    if isinstance(payload, bytes):
                        data = payload
                    else:
                        with open(payload, "rb") as src:
                            data = src.read()
                    header(f, name, stat.S_IFREG | mode, len(data))
                    f.write(data)
                    f.write(b"\0" * (-len(data) % 4))
            header(f, "TRAILER!!!", 0, 0, nlink=1)
            f.write(b"\0" * (-f.tell() % 512))


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-fA-F]+\)\s*$")


def _shared_libs(path: str) -> list[str]:
    """Absolute paths ldd lists for an ELF file (the loader included); [] if static."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    text = r.stdout + r.stderr
    if r.returncode != 0 or "not a dynamic executable" in text or "statically linked" in text:
        return []
    libs = []
    for line in r.stdout.splitlines():
        if "=> not found" in line:
            raise FileNotFoundError(f"{path}: ldd: {line.strip()}")
        m = _LDD_LINE.match(line)
        if m and m.group(2).startswith("/"):
            libs.append(os.path.normpath(m.group(2)))
    return libs


def _add_user_file(tree: _Tree, dest: str, host: str, lib_dirs: set[str]):
    dest = os.path.normpath("/" + dest.lstrip("/"))
    if os.path.isdir(host):
        for root, dirs, files in os.walk(host):
            rel = os.path.relpath(root, host)
            droot = dest if rel == "." else os.path.join(dest, rel)
            tree.dir(droot)
            for name in files:
                _add_user_file(tree, os.path.join(droot, name), os.path.join(root, name),
                               lib_dirs)
        return
    if not os.path.exists(host):
        raise FileNotFoundError(host)
    tree.file(dest, host)
    if _is_elf(host):
        for lib in _shared_libs(host):
            if lib not in tree.entries:
                tree.file(lib, os.path.realpath(lib), mode=0o755)
            d = os.path.dirname(lib)
            if d not in _LD_DEFAULT_DIRS:
                lib_dirs.add(d)


def _init_script(nonce: str, kver: str, chain, lib_dirs) -> str:
    loads = []
    for name, rel in chain:
        rel = re.sub(r"\.(xz|zst|gz)$", "", rel)
        if name in REQUIRED_MODULES:
            loads.append(f"insmod /lib/modules/{kver}/{rel} || echo 'vm: insmod {name} failed'")
        else:
            loads.append(f"insmod /lib/modules/{kver}/{rel} 2>/dev/null || "
                         f"echo 'vm: note: optional module {name} not loaded'")
    ld = ":".join(sorted(lib_dirs))
    return f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
hostname vm
{chr(10).join(loads)}
{"export LD_LIBRARY_PATH=" + ld if ld else ""}
cd /root
echo '@@VM-START-{nonce}@@'
/bin/sh /vm-script.sh </dev/null
rc=$?
echo '@@VM-EXIT-{nonce}='$rc'@@'
poweroff -f
"""


def _build_initramfs(out_path: str, files: dict[str, str], script: str, nonce: str,
                     moddir: str, modules) -> None:
    tree = _Tree()
    for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/proc", "/sys", "/dev", "/tmp",
              "/run", "/etc", "/root", "/var/tmp"):
        tree.dir(d)
    tree.entries["/tmp"] = ("dir", 0o1777, None)
    tree.chardev("/dev/console", 5, 1)
    tree.chardev("/dev/null", 1, 3, 0o666)

    busybox = _busybox()
    tree.file("/bin/busybox", busybox, mode=0o755)
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "bin/busybox":
            tree.symlink("/" + a, "/bin/busybox")

    tree.file("/etc/hosts", data=b"127.0.0.1 localhost vm\n::1 localhost ip6-localhost\n")
    tree.file("/etc/nsswitch.conf", data=b"passwd: files\ngroup: files\nhosts: files\n")
    tree.file("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                                  b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    tree.file("/etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")

    # Modules at their usual place (decompressed), plus a trimmed modules.dep/alias so
    # busybox's /sbin/modprobe can serve the kernel's own request_module() calls.
    kver = os.path.basename(moddir.rstrip("/"))
    chain = _module_chain(moddir, modules)
    dep_lines, names = [], set()
    table = _read_modules_dep(moddir)
    for name, rel in chain:
        plain = re.sub(r"\.(xz|zst|gz)$", "", rel)
        tree.file(f"/lib/modules/{kver}/{plain}",
                  data=_module_bytes(os.path.join(moddir, rel)), mode=0o644)
        deps = [re.sub(r"\.(xz|zst|gz)$", "", d) for d in table[name][1]]
        dep_lines.append(f"{plain}: {' '.join(deps)}".rstrip() + "\n")
        names.add(name)
    tree.file(f"/lib/modules/{kver}/modules.dep", data="".join(dep_lines).encode())
    aliases = []
    alias_file = os.path.join(moddir, "modules.alias")
    if os.path.exists(alias_file):
        with open(alias_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "alias" and parts[2] in names:
                    aliases.append(line)
    tree.file(f"/lib/modules/{kver}/modules.alias", data="".join(aliases).encode())

    lib_dirs: set[str] = set()
    for dest, host in files.items():
        _add_user_file(tree, dest, host, lib_dirs)

    tree.file("/vm-script.sh", data=script.encode(), mode=0o755)
    tree.file("/init", data=_init_script(nonce, kver, chain, lib_dirs).encode(), mode=0o755)
    tree.write_cpio(out_path)


# ---------------------------------------------------------------- running

def script_output(output: str) -> str:
    """The part of run_in_vm's output that the script printed (between the markers)."""
    m = re.search(r"@@VM-START-[0-9a-f]+@@\n(.*?)(?:@@VM-EXIT-[0-9a-f]+=-?\d+@@|\Z)",
                  output, re.S)
    return m.group(1) if m else ""


def _die_with_parent():
    """In the child: SIGKILL qemu if the Python process that started it dies first."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass


def _boot(image: str, initrd: str, accel: str, memory_mb: int, smp: int, timeout: float,
          nonce: str) -> tuple[int, str, bool]:
    """(exit code or -1, console output, whether /init started the script)."""
    cmd = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-nographic",
           "-serial", "stdio", "-no-reboot", "-m", str(memory_mb), "-smp", str(smp),
           "-kernel", image, "-initrd", initrd, "-append", _KERNEL_APPEND]
    if os.path.exists(_QBOOT):
        cmd += ["-bios", _QBOOT]
    if accel == "kvm":
        cmd += ["-enable-kvm", "-cpu", "host"]
    else:
        # "max": every feature TCG emulates (AES-NI, PCLMUL, AVX2...), so the same
        # crypto modules load as on a real CPU.
        cmd += ["-accel", "tcg", "-cpu", "max"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    chunks: list[bytes] = []
    started = threading.Event()
    done = threading.Event()
    start_re = re.compile(rb"@@VM-START-" + nonce.encode() + rb"@@")
    exit_re = re.compile(rb"@@VM-EXIT-" + nonce.encode() + rb"=(-?\d+)@@")
    code: list[int] = []

    def reader():
        tail = b""
        while True:
            try:
                b = os.read(proc.stdout.fileno(), 65536)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
            tail = (tail + b)[-4096:]
            if not started.is_set() and start_re.search(tail):
                started.set()
            if not code:
                m = exit_re.search(tail)
                if m:
                    code.append(int(m.group(1)))
                    done.set()
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.monotonic()
    deadline = t0 + timeout
    timed_out = False
    if accel == "kvm":
        # A KVM that cannot run this kernel hangs or aborts before /init.
        first = t0 + min(timeout, _KVM_START_DEADLINE)
        while not started.is_set() and not done.is_set() and time.monotonic() < first:
            started.wait(0.05)
        timed_out = not started.is_set() and not done.is_set()
    if not timed_out and not done.wait(max(0.0, deadline - time.monotonic())):
        timed_out = True
    if code:
        # The script is over: give `poweroff -f` a moment, then stop qemu ourselves.
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    t.join(timeout=5)
    proc.stdout.close()
    out = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    if timed_out:
        what = "the script's start" if not started.is_set() else "the script's end"
        out += f"\n[vm: no sign of {what} after {time.monotonic() - t0:.0f} s " \
               f"({accel}); qemu killed]\n"
    elif not code:
        out += f"\n[vm: qemu exited with status {proc.returncode} before the script finished]\n"
    return (code[0] if code else -1), out, started.is_set()


def run_in_vm(files: dict[str, str], script: str, timeout: float = 120, memory_mb=512,
              *, modules=DEFAULT_MODULES, smp: int = 1) -> tuple[int, str]:
    """Boot the VM, run `script` with /bin/sh (busybox), return (exit code, console output).

    files: path in the VM -> path on the host (a directory is copied recursively). ELF
    files bring every shared library `ldd` lists, at the same paths, and the loader;
    LD_LIBRARY_PATH covers non-standard library directories (e.g. a build tree's lib/).
    timeout: seconds for the whole boot + script with KVM; multiplied by
    TCG_TIMEOUT_FACTOR when the VM runs emulated (no usable KVM). The exit code is -1
    when the script never reported one (timeout, kernel panic, qemu error); the output
    ends with a "[vm: ...]" line saying which.
    modules: kernel modules to insmod (with their dependencies) before the script.
    smp: vCPUs.
    """
    global _kvm_failed_here
    why = vm_unavailable()
    if why:
        raise RuntimeError(f"VM unavailable: {why}")
    kernel, moddir = find_kernel()
    nonce = secrets.token_hex(8)
    tmp = tempfile.mkdtemp(prefix="ws6455-vm-")
    try:
        initrd = os.path.join(tmp, "initramfs.cpio")
        _build_initramfs(initrd, files, script, nonce, moddir, modules)
        image = _boot_image(kernel, tmp)
        if vm_accel() == "kvm":
            code, out, started = _boot(image, initrd, "kvm", memory_mb, smp, timeout, nonce)
            if started or os.environ.get("WS6455_VM_ACCEL", "").lower() == "kvm":
                return code, out
            # The script never ran: KVM does not work here. Say so once, then emulate.
            _kvm_failed_here = "KVM boot failed: " + (out.strip().splitlines() or ["?"])[0]
        code, out, _ = _boot(image, initrd, "tcg", memory_mb, smp,
                             timeout * TCG_TIMEOUT_FACTOR, nonce)
        if _kvm_failed_here:
            out = f"[vm: {_kvm_failed_here}; running emulated (TCG)]\n" + out
        return code, out
    finally:
        if os.environ.get("WS6455_VM_KEEP"):
            print(f"vm: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
