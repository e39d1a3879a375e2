"""Run model-written Python (and the tests that judge it) far away from the trainer.

Model-written code never runs in the trainer's process. Each call starts a fresh `python -I -S`
whose first act is a small trusted *harness* (HARNESS below). What confines it:

- jail: Debian's bubblewrap (`bwrap`) when it works here; else, as root, the same namespaces made by
  hand (`unshare` via ctypes: the "setuid" jail). Either way: its own PID, network (no route out,
  at most a loopback), IPC, UTS and mount namespaces; no /proc; a fresh size-capped tmpfs /tmp as its
  empty working directory, gone when it ends. Files: bwrap shows /usr, Python's install and a few
  /etc files, read-only; the setuid jail shows the host minus /tmp, /var/tmp, /dev/shm (and, when
  Python lives under a closed directory such as /root, everything else in it), with the uid's rights.
- user: as root, the harness drops to an unprivileged uid of its own for this run (see UID_BASE):
  never root, so RLIMIT_NPROC is enforced, the parent cannot be signalled and root-only files stay
  closed; no_new_privs (setuid binaries give nothing) and a non-dumpable process.
- limits: wall-clock timeout (the parent kills the whole process group), RLIMIT_CPU, RLIMIT_AS
  (memory), RLIMIT_NPROC (fork bombs), RLIMIT_FSIZE, output cap (the parent reads at most
  `max_output` bytes of stdout+stderr, then kills), stdin closed, environment scrubbed (PATH, LANG,
  HOME=TMPDIR=/tmp only: nothing of the trainer's environment leaks).
- no jail at all (not root and no working bwrap): `run_python` refuses with a LadderError, unless
  LADDER_SANDBOX=unsafe is set, which runs with the limits above, a scrubbed environment and a temporary
  directory only (no network or file-system isolation; the code runs as you).

Faking a pass. Program and tests run in one interpreter (the tests need the program's functions), so
"it exited 0" proves nothing: `sys.exit(0)` or `os._exit(0)` before the asserts would pass. So:
1. The parent makes a random nonce per run; a pass is exit status 0 AND `__LADDER_OK_<nonce>__` as the
   very last line of stdout. The nonce travels in an anonymous memfd: never a file, argv or the
   environment, and the jail has no /proc.
2. Only a *keeper* thread of the harness reads it, before any model code runs. Model code runs on the
   main thread; the keeper polls that thread and prints the marker (saved `os.write`, then `os._exit`,
   so no atexit hook or thread of the program can print after it) only when the harness's original
   `main()` frame sits on its park line, which it reaches only if the program and then the tests
   returned without an exception. Setting a flag or printing a guess achieves nothing.
3. An audit hook (which cannot be removed, and refuses any further hook) refuses other threads' frames
   (`sys._current_frames`), gc introspection, settrace/setprofile (which could jump over asserts) and
   ctypes (raw memory): nothing reaches the keeper. The main thread's frames (`sys._getframe`,
   tracebacks, a signal handler's frame) hold nothing to steal, and what steers the harness after the
   program is in immutable locals, which CPython <= 3.12 cannot rewrite from outside. From 3.13 frame
   locals are writable (PEP 667): there the hook also refuses frame access, and a signal handler's
   frame argument is the one door left open.
4. Between program and tests the harness restores any builtins the program patched, and runs the tests
   without the program's names that shadow builtins (its own `len` or `AssertionError`).
Out of reach of any sandbox: value tricks such as returning an object whose __eq__ is always True.
Tests that compare types or reprs close that; it is a property of the test suite.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ladder.errors import LadderError

# Run n of process p uses uid UID_BASE + (p % 64) * 64 + n % 64 (all below 65534, `nobody`): concurrent
# runs do not share a uid, so one run's fork bomb or kill(-1) never reaches another's processes.
UID_BASE = 61000
_slot_lock = threading.Lock()
_slot = 0


@dataclass
class SandboxResult:
    ok: bool  # program and tests ran to the end: exit 0 and the nonce line last
    returncode: int | None
    stdout: str  # the program's output, without the nonce line
    stderr: str
    timed_out: bool
    reason: str  # "passed", or why not, in a few words


# The trusted first part of every run. It is public (it is in this file): its safety rests on the nonce
# it receives, not on secrecy. Runs as `python -I -S -B -c HARNESS <job fd> <nonce fd> <park line>`.
HARNESS = r'''
import _thread, builtins, ctypes, json, os, resource, sys, time

def isolate(libc, job):
    """Root without bubblewrap: own namespaces, private tmpfs, no /proc; returns in the jailed child."""
    def check(result, what):
        if result != 0:
            raise OSError(ctypes.get_errno(), what)
    def mount(src, dst, fstype, flags, data=None):
        check(libc.mount(src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                         data and data.encode()), "mount " + dst)
    BIND, REC, PRIVATE, NOSUID, NODEV, RDONLY = 4096, 16384, 1 << 18, 2, 4, 1
    check(libc.unshare(0x00020000 | 0x04000000 | 0x08000000 | 0x40000000 | 0x20000000), "unshare")
    mount("none", "/", None, REC | PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", NOSUID | NODEV, "size=%d,mode=1777" % job["disk"])
    # Python's install may sit under a directory the unprivileged uid cannot enter (/root/.pyenv):
    # stage it, cover that directory with an empty tmpfs, and bind the install back at its own path.
    staged = []
    for i, prefix in enumerate(job["prefixes"]):
        parts, path, blocker = prefix.strip("/").split("/"), "", None
        for part in parts[:-1]:
            path += "/" + part
            if not os.stat(path).st_mode & 0o001:
                blocker = path
                break
        if blocker:
            stage = "/tmp/.ladder-stage-%d" % i
            os.mkdir(stage)
            mount(prefix, stage, None, BIND | REC)
            staged.append((blocker, stage, prefix))
    for blocker in sorted({b for b, _, _ in staged}):
        mount("tmpfs", blocker, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")
    for _, stage, prefix in staged:
        os.makedirs(prefix, exist_ok=True)
        mount(stage, prefix, None, BIND | REC)
        libc.umount2(stage.encode(), 2)
        os.rmdir(stage)
    for path in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", NOSUID | NODEV, "size=1m,mode=1777")
    mount("tmpfs", "/proc", "tmpfs", NOSUID | NODEV | RDONLY, "size=4k,mode=0555")
    os.chdir("/tmp")
    # A new PID namespace applies to children: fork its init (a reaper that never runs model code),
    # which forks the process that does. When init ends, the kernel kills everything left inside.
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            libc.prctl(1, 9, 0, 0, 0)  # PDEATHSIG=SIGKILL: dies with its parent
            continue
        while True:
            try:
                status = os.waitpid(pid, 0)[1]
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)

def keeper(fd, main_ident, main_code, park_line, ready):
    """The only holder of the nonce, in a thread no model code runs on. It prints the marker when the
    main thread's original main() frame stands on the park line: the program and tests returned."""
    write, exit_, sleep = os.write, os._exit, time.sleep
    try:
        flush_out, flush_err = sys.stdout.flush, sys.stderr.flush
        data = b""
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        os.close(fd)
        marker = b"\n__LADDER_OK_" + data.strip() + b"__\n"
        data = None
        original = sys._current_frames()[main_ident]
        while original is not None and original.f_code is not main_code:
            original = original.f_back
        if original is None:
            raise RuntimeError("main() frame not found")

        # From 3.13 (PEP 667) a frame's f_locals writes through to the running function: there the
        # main thread's frames are closed too. Before, they hold nothing of use (immutable locals).
        writable_frames = sys.version_info >= (3, 13)

        def audit(event, args):  # a closure nothing can reach; no mutable globals
            if event == "sys.addaudithook":
                raise RuntimeError("no more audit hooks")  # RuntimeError: the new hook is silently refused
            if (event in ("sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
                          "sys.monitoring.register_callback")
                    or event.startswith(("gc.get_", "ctypes."))
                    or (writable_frames and (event == "sys._getframe" or (event == "object.__getattr__" and args[1]
                        in ("tb_frame", "gi_frame", "cr_frame", "ag_frame"))))):
                raise ValueError(event + " is not allowed in the ladder sandbox")  # ValueError: what stdlib expects
        sys.addaudithook(audit)  # for the rest of the process: cannot be removed
        ready.release()
        # Poll the line of one frame object: no model frame is ever held here, and the loop allocates
        # nothing, so no model finalizer or garbage collection runs on this thread.
        while original.f_lineno != park_line:
            sleep(0.002)
        for flush in (flush_out, flush_err):
            try:
                flush()
            except BaseException:
                pass
        write(1, marker)
        exit_(0)
    except BaseException:  # never let an exception (and its frames) out of this thread
        try:
            write(2, b"ladder harness: keeper failed\n")
        finally:
            exit_(1)

def main(job_fd, nonce_fd, park_line):
    data = b""
    while True:
        chunk = os.read(job_fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    os.close(job_fd)
    job = json.loads(data)
    data = None
    libc = ctypes.CDLL(None, use_errno=True)
    if job["isolate"]:
        isolate(libc, job)
    if job["uid"] is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(job["uid"])
        os.setuid(job["uid"])
        libc.prctl(1, 9, 0, 0, 0)  # PDEATHSIG=SIGKILL again: setuid cleared it
    libc.prctl(38, 1, 0, 0, 0)  # no_new_privs: setuid binaries give nothing
    libc.prctl(4, 0, 0, 0, 0)  # not dumpable: no other process of this uid can read our memory
    for name, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    sys.path.extend(job["site"])
    ready = _thread.allocate_lock()
    ready.acquire()
    _thread.start_new_thread(keeper, (nonce_fd, _thread.get_ident(), main.__code__, park_line, ready))
    ready.acquire()  # the keeper holds the nonce and the audit hook is on: model code may run

    # What is used after model code has run is saved now, before it could be patched, and held in
    # immutable locals: nothing the program might reach can change what runs next.
    _exec, _compile, _write, _exit, _sleep = exec, compile, os.write, os._exit, time.sleep
    _flush, _vars, _isinstance, _type, _str = sys.stdout.flush, vars, isinstance, type, str
    sources = (job["program"], job["tests"])
    job = None
    clean = tuple(_vars(builtins).items())
    names = frozenset(k for k, _ in clean)
    ns = {"__name__": "solution", "__builtins__": builtins}
    phase = 0
    try:
        _exec(_compile(sources[0], "solution.py", "exec"), ns)
        phase = 1
        real = _vars(builtins)
        for key in [k for k in real if k not in names]:
            del real[key]
        real.update(clean)
        ns = {k: v for k, v in ns.items() if k not in names}  # a program's own `len`, `AssertionError`...
        ns["__name__"], ns["__builtins__"] = "solution", builtins
        _exec(_compile(sources[1], "tests.py", "exec"), ns)
    except BaseException as e:
        tb, line = e.__traceback__, 0
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
            if line == 0:
                line = tb.tb_lineno
        if line == 0 and _isinstance(e, SyntaxError):
            line = e.lineno or 0
        try:
            text = sources[phase].splitlines()[line - 1].strip() if line else ""
            detail = _str(e)[:500]
            message = "%s line %d: %s\n%s%s\n" % (("program", "tests")[phase], line, text, _type(e).__name__,
                                                  detail and ": " + detail)
        except BaseException:
            message = "%s failed\n" % ("program", "tests")[phase]
        try:
            _flush()
        except BaseException:
            pass
        _write(2, message.encode("utf-8", "replace"))
        _exit(1)
    while True:
        _sleep(60)  # <- park: only reachable once the tests returned; the keeper prints the marker

main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
'''
PARK_LINE = next(i for i, line in enumerate(HARNESS.split("\n"), 1) if "# <- park" in line)


def _next_uid() -> int:
    global _slot
    with _slot_lock:
        _slot += 1
        return UID_BASE + (os.getpid() % 64) * 64 + _slot % 64


def _prefixes() -> list[str]:
    """Where this Python lives (stdlib, site-packages): the jail shows these read-only."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    return sorted(p for p in paths if p and os.path.isdir(p) and p != "/usr" and not p.startswith("/usr/"))


def _site_packages() -> list[str]:
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    return [d for d in dirs if os.path.isdir(d)]


@functools.lru_cache(maxsize=1)
def _bwrap_has_size() -> bool:
    try:
        return "--size" in subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def _bwrap_args(disk_bytes: int) -> list[str]:
    args = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged /usr: symlinks; else bind
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"):
        args += ["--ro-bind-try", path, path]
    bound = set()
    for prefix in _prefixes():
        parts = prefix.strip("/").split("/")
        for i in range(1, len(parts)):  # parents we create are enterable, even if the host's are not
            parent = "/" + "/".join(parts[:i])
            if parent not in bound and not parent.startswith("/usr"):
                args += ["--perms", "0755", "--dir", parent]
                bound.add(parent)
        args += ["--ro-bind", prefix, prefix]
    size = ["--size", str(disk_bytes)] if _bwrap_has_size() else []  # bubblewrap >= 0.7; else RLIMIT_FSIZE only
    args += ["--dev", "/dev", "--perms", "1777", *size, "--tmpfs", "/tmp", "--chdir", "/tmp",
             "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        # bwrap as root keeps capabilities: keep only those the harness needs to drop to its own uid.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user"]
    return args


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc, timeout: float, max_output: int):
    """Read stdout/stderr until both close, the deadline passes or the output cap is hit."""
    out, err = bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    timed_out = truncated = False
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            events = sel.select(min(remaining, 0.2))
            for key, _ in events:
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                bufs[key.fd] += chunk
                if len(out) + len(err) > max_output:
                    truncated = True
            if truncated or proc.poll() is not None:
                break  # over the cap; or it ended (what it wrote is in the pipes; stragglers are killed)
    finally:
        _kill_group(proc)
        sel.close()
    if not truncated:  # whatever was written before the end is still in the pipes
        for fd, buf in bufs.items():
            while len(out) + len(err) <= max_output:
                try:
                    chunk = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                buf += chunk
    return bytes(out[:max_output]), bytes(err[: max(0, max_output - len(out))]), timed_out, truncated


def _run(code: str, tests: str, jail: str, *, timeout: float, memory_mb: int, max_output: int,
         max_procs: int = 32, disk_mb: int = 32) -> SandboxResult:
    nonce = secrets.token_hex(16)
    ending = f"\n__LADDER_OK_{nonce}__\n"  # exactly as the harness writes it, as the very last bytes
    root = os.geteuid() == 0
    disk = disk_mb << 20
    job = {
        "program": code, "tests": tests, "site": _site_packages(), "prefixes": _prefixes(),
        "isolate": jail == "setuid", "disk": disk, "uid": _next_uid() if root and jail != "unsafe" else None,
        "rlimits": {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": int(timeout) + 1, "RLIMIT_FSIZE": disk,
                    "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256},
    }
    if jail != "unsafe":  # as yourself without a user namespace it would count all of your processes
        job["rlimits"]["RLIMIT_NPROC"] = max_procs
    # Anonymous memory files: no path anywhere; close-on-exec except for this one child.
    fds = [os.memfd_create("ladder-job"), os.memfd_create("ladder-nonce")]
    workdir = None
    try:
        for fd, content in zip(fds, (json.dumps(job).encode(), nonce.encode())):
            os.write(fd, content)
            os.lseek(fd, 0, os.SEEK_SET)
        python = [sys.executable, "-I", "-S", "-B", "-c", HARNESS, str(fds[0]), str(fds[1]), str(PARK_LINE)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
        if jail == "bwrap":
            argv, cwd = _bwrap_args(disk) + python, "/"
        elif jail == "setuid":
            argv, cwd = python, "/"
        else:
            workdir = tempfile.mkdtemp(prefix="ladder-sandbox-")
            env.update(HOME=workdir, TMPDIR=workdir)
            argv, cwd = python, workdir
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=fds, env=env, cwd=cwd, start_new_session=True, close_fds=True)
        with proc:
            for fd in fds:
                os.close(fd)
            fds = []
            out, err, timed_out, truncated = _collect(proc, timeout, max_output + len(ending))
            proc.wait()
    finally:
        for fd in fds:
            os.close(fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    finished = stdout.endswith(ending)
    if finished:
        stdout = stdout[: -len(ending)]
    elif truncated:  # the cap is on the program's bytes, the marker's room aside
        stdout = stdout[:max_output]
        stderr = stderr[: max(0, max_output - len(stdout))]
    ok = proc.returncode == 0 and finished and not timed_out and not truncated
    if timed_out:
        reason = f"timeout after {timeout:g} s"
    elif truncated:
        reason = f"output over {max_output} bytes"
    elif ok:
        reason = "passed"
    elif proc.returncode != 0:
        reason = f"exit code {proc.returncode}" if proc.returncode > 0 else f"killed by signal {-proc.returncode}"
    else:
        reason = "ended before the tests finished"
    return SandboxResult(ok, proc.returncode, stdout, stderr, timed_out, reason)


_jail_lock = threading.Lock()
_problems: dict[str, str | None] = {}  # jail kind -> None if it works here, else why not (probed once)
KINDS = ("bwrap", "setuid", "unsafe")


def probe(kind: str) -> str | None:
    """None if the jail `kind` works on this machine, else a few words on why not. Cached."""
    with _jail_lock:
        if kind not in _problems:
            if kind not in KINDS:
                _problems[kind] = f"'{kind}' is not one of {', '.join(KINDS)}"
            elif kind == "bwrap" and not shutil.which("bwrap"):
                _problems[kind] = "bwrap is not installed"
            elif kind == "setuid" and os.geteuid() != 0:
                _problems[kind] = "the setuid jail needs root"
            else:
                r = _run("print(6 * 7)", "", kind, timeout=20, memory_mb=512, max_output=4096)
                ok = r.ok and r.stdout.strip() == "42"
                _problems[kind] = None if ok else "failed: " + " ".join((r.stderr or r.reason).split())[-160:]
        return _problems[kind]


def jail() -> str:
    """The isolation used here: 'bwrap', else 'setuid' (root, namespaces by hand); 'unsafe' only on request.

    LADDER_SANDBOX=bwrap|setuid|unsafe forces one. No working jail is a LadderError, never a silent
    fallback to running model code unconfined."""
    forced = os.environ.get("LADDER_SANDBOX", "").strip().lower()
    problems = []
    for kind in [forced] if forced else ["bwrap", "setuid"]:
        problem = probe(kind)
        if problem is None:
            return kind
        problems.append(f"{kind}: {problem}")
    raise LadderError("no working sandbox for model-written code (" + "; ".join(problems) + "): install "
                      "bubblewrap (apt-get install bubblewrap) or run as root; LADDER_SANDBOX=unsafe runs it "
                      "with resource limits only")


def run_python(code: str, *, tests: str = "", timeout: float = 5.0, memory_mb: int = 512,
               max_output: int = 64_000, max_procs: int = 32, disk_mb: int = 32,
               jail_kind: str | None = None) -> SandboxResult:
    """Run `code`, then `tests` (Python asserts) in the same namespace, in a jail; never in this process.

    ok is True only if both ran to the end within the limits (see the module docstring for what
    counts). `jail_kind` overrides the automatic choice (tests use it to exercise each jail)."""
    return _run(code, tests, jail_kind or jail(), timeout=timeout, memory_mb=memory_mb, max_output=max_output,
                max_procs=max_procs, disk_mb=disk_mb)


def run_many(codes, tests=None, *, max_workers: int | None = None, **limits) -> list[SandboxResult]:
    """run_python over many programs at once (optional matching `tests`), in order.

    Threads only wait on subprocesses, so a pool as wide as the CPU count keeps every core busy."""
    codes = list(codes)
    tests = list(tests) if tests is not None else [""] * len(codes)
    if len(tests) != len(codes):
        raise LadderError(f"run_many: {len(codes)} programs but {len(tests)} tests")
    if not codes:
        return []
    jail()  # pick (or refuse) once, before the threads start
    workers = max(1, min(len(codes), max_workers or os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda pair: run_python(pair[0], tests=pair[1], **limits), zip(codes, tests)))
