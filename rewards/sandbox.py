"""Run model-written Python far away from the trainer, and judge it from a process it cannot reach.

Each run has two processes, and the verdict is never the one that runs model code:

- the *program* (sandbox_program.py): a fresh `python -I -S` in a jail that runs the model's code, then
  answers calls into its top-level functions. It holds no secret and decides nothing.
- the *judge* (sandbox_judge.py): forked per run from one judge server per trainer process (a fork costs
  far less than a Python start). It runs the row's tests (dataset code: trusted, time-limited) with each
  of the program's top-level names bound to a handle; a call crosses a pipe as plain data (numbers,
  strings, lists, tuples, dicts, sets, bytes, None) and its result comes back as plain data, decoded into
  fresh objects of the judge's. `ok` is the judge's verdict: the tests ran to the end without an exception.

What the verdict rests on: the judge's memory is another process's, outside the jail, so nothing in it
(the tests, their expected values) can be read by the program, and no comparison in the tests ever runs
the program's code: an object with an always-true __eq__ or an int subclass crosses as its plain value, or
as a handle that equals only itself. Exiting early (`sys.exit(0)`, `os._exit(0)`), printing anything,
patching builtins, raising SystemExit or writing garbage to the pipe cannot pass: the program process's
exit status and output are not evidence of anything (garbage or a closed pipe fails the run).
The judge itself is not jailed (it runs only the dataset's tests, as the trainer's user): it is limited
by an alarm at the deadline, RLIMIT_CPU and RLIMIT_AS, gets nothing but the verdict pipe and the two pipe
ends to its program, and is not dumpable (no process of its uid can ptrace it).

What confines the program:
- jail: Debian's bubblewrap (`bwrap`, 0.7 or newer: older ones cannot cap a tmpfs's size) when it works
  here; else, as root, the same namespaces made by hand (the "setuid" jail, sandbox_program.isolate).
  Both give: its own PID, network (no route out, at most a loopback), IPC, UTS and mount namespaces; no
  /proc; a root of its own holding only read-only binds of /usr, Python's install (stdlib and
  site-packages), a few /etc files (_root_layout), a minimal /dev (null, zero, full, random, urandom), and
  a fresh size-capped tmpfs /tmp as its empty working directory, gone when it ends. No host path, socket or
  world-readable file outside those binds exists in there.
- user: as root, it drops to an unprivileged uid of its own for this run (see UID_BASE): never root, so
  RLIMIT_NPROC is enforced, the parent and the judge cannot be signalled and root-only files stay closed;
  no_new_privs (setuid binaries give nothing).
- limits: wall-clock timeout (the parent kills the whole process group; the judge's own alarm ends it),
  RLIMIT_CPU, RLIMIT_AS (memory per process) and, as root, a memory cgroup of the run's own capped at the
  same size for all of its processes, shared memory and tmpfs together (_memory_cgroup; where the cgroup file
  system cannot be written, RLIMIT_AS alone), RLIMIT_NPROC (fork bombs), RLIMIT_FSIZE, output cap (the parent reads at
  most `max_output` bytes of stdout+stderr, then kills), a cap on each message to the judge, stdin
  closed, environment scrubbed (PATH, LANG, HOME=TMPDIR=/tmp only).
- no jail at all (not root and no working bwrap): `run_python` refuses with a LadderError, unless
  LADDER_SANDBOX=unsafe is set, which runs with the limits above, a scrubbed environment and a temporary
  directory only: no network or file-system isolation, the code runs as you, and as you it could reach
  this process's pipes through /proc and so fake a verdict. Use it only for code you would run anyway.

Out of reach, by design: tests whose expected values the program can compute (a test that compares the
result to another function of the program's, as some datasets do) and what the prompt shows (MBPP's
prompts show the asserts, so a program can hard-code those). Tests see plain copies: a test that passes
a function or its own object to the program fails, and in-place mutation of an argument is not seen.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import selectors
import shutil
import signal
import socket
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
BWRAP_MIN = (0, 7)  # --size (a cap on a tmpfs) arrived in bubblewrap 0.7
MAX_MESSAGE = 8 << 20  # bytes: one reply from the program to the judge
JUDGE_MEMORY = 2 << 30  # bytes of address space for a judge: decoding a reply of MAX_MESSAGE fits
HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM_FILE = os.path.join(HERE, "sandbox_program.py")
JUDGE_FILE = os.path.join(HERE, "sandbox_judge.py")
_slot_lock = threading.Lock()
_slot = 0


@dataclass
class SandboxResult:
    ok: bool  # the judge's verdict: the program ran and the tests ran to the end, within the limits
    returncode: int | None  # the program process's exit status (informational: not part of the verdict)
    stdout: str  # what the program printed
    stderr: str  # what it printed to stderr, then the judge's account of a failure
    timed_out: bool
    reason: str  # "passed", or why not, in a few words


# The program side's first line: run sandbox_program.py's code object from the memfd named by argv[1].
BOOT = "import marshal,sys;exec(marshal.loads(open(int(sys.argv[1]),'rb').read()),{'__name__':'__main__'})"


@functools.lru_cache(maxsize=1)
def _program_code() -> bytes:
    """sandbox_program.py compiled once, marshalled (for this very interpreter, which runs it)."""
    import marshal

    with open(PROGRAM_FILE, encoding="utf-8") as f:
        return marshal.dumps(compile(f.read(), PROGRAM_FILE, "exec", dont_inherit=True))


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


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@functools.lru_cache(maxsize=1)
def _root_layout() -> dict:
    """The jail's whole file system, for both jails: read-only dirs and files, symlinks, devices."""
    dirs = ["/usr"]
    for prefix in _prefixes():
        if not any(_under(prefix, d) for d in dirs):
            dirs.append(prefix)
    links = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged /usr: symlinks; else bind
        path = "/" + name
        if os.path.islink(path):
            links.append([os.readlink(path), path])
        elif os.path.isdir(path):
            dirs.append(path)
    files = [p for p in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
             if os.path.exists(p)]
    devices = [p for p in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom") if os.path.exists(p)]
    sources = dirs + files + devices
    # The hand-made jail builds this root on a tmpfs mounted over a host directory, in its own mount
    # namespace: one that hides none of the paths it binds.
    mountpoint = next((m for m in ("/tmp", "/mnt", "/var/tmp", "/srv", "/opt", "/media", "/home")
                       if os.path.isdir(m) and not os.path.islink(m) and not any(_under(s, m) for s in sources)),
                      None)
    return {"dirs": dirs, "links": links, "files": files, "devices": devices, "mountpoint": mountpoint}


@functools.lru_cache(maxsize=1)
def _bwrap_version() -> tuple[int, ...] | None:
    try:
        out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def _bwrap_args(disk_bytes: int) -> list[str]:
    layout = _root_layout()
    args = ["bwrap"]
    made = set()
    for path in layout["dirs"]:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):  # parents we create are enterable, even if the host's are not
            parent = "/" + "/".join(parts[:i])
            if parent not in made and not any(_under(parent, d) for d in layout["dirs"]):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += ["--ro-bind", path, path]
    for target, path in layout["links"]:
        args += ["--symlink", target, path]
    for path in layout["files"]:
        args += ["--ro-bind", path, path]
    args += ["--dev", "/dev", "--perms", "1777", "--size", str(disk_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp",
             "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:
        # bwrap as root keeps capabilities: keep only those the program side needs to drop to its own uid.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user"]
    return args


class _JudgeServer:
    """One judge server per process (restarted if it dies, or after a fork); see sandbox_judge.py."""

    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.sock = None
        self.owner = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", JUDGE_FILE, str(theirs.fileno()), json.dumps(_site_packages())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        self.sock, self.owner = ours, os.getpid()

    def stop(self) -> None:
        if self.owner == os.getpid():
            if self.sock is not None:
                self.sock.close()  # the server ends when it reads the hang-up
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        elif self.sock is not None:
            self.sock.close()  # a forked child's copy: the parent's server is the parent's
        self.proc = self.sock = self.owner = None

    def submit(self, header: bytes, fds: list[int]) -> None:
        with self.lock:
            for attempt in range(2):
                if self.owner != os.getpid() or self.proc is None or self.proc.poll() is not None:
                    self.stop()
                    self._start()
                try:
                    socket.send_fds(self.sock, [header], fds)
                    return
                except OSError as e:
                    self.stop()
                    if attempt:
                        raise LadderError(f"the sandbox's judge process does not answer ({e})") from None


_judges = _JudgeServer()
atexit.register(_judges.stop)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc, verdict_fd: int, timeout: float, max_output: int):
    """Read the program's stdout/stderr and the judge's verdict until the verdict is in and the program
    has ended (or a moment after), the deadline passes, or the output cap is hit."""
    out, err, verdict = bytearray(), bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, verdict_fd: verdict}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    timed_out = truncated = False
    judged_at = None  # when the verdict came (or the judge ended without one)
    try:
        while True:
            now = time.monotonic()
            if judged_at is not None and (proc.poll() is not None or now > judged_at + 0.5):
                break  # after the verdict, the program only needs a moment to flush and exit
            if now >= deadline:
                timed_out = judged_at is None
                break
            if not sel.get_map():
                proc.wait(max(0.0, min(deadline - now, 0.5)))
                continue
            for key, _ in sel.select(min(deadline - now, 0.2)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(key.fd)
                    if key.fd == verdict_fd and judged_at is None:
                        judged_at = time.monotonic()
                    continue
                bufs[key.fd] += chunk
                if key.fd == verdict_fd and b"\n" in verdict and judged_at is None:
                    judged_at = time.monotonic()
                if len(out) + len(err) > max_output:
                    truncated = True
            if truncated:
                break
    finally:
        _kill_group(proc)
        sel.close()
    if not truncated:  # whatever was written before the end is still in the pipes
        for fd in (proc.stdout.fileno(), proc.stderr.fileno()):
            while len(out) + len(err) <= max_output:
                try:
                    chunk = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    break
                if not chunk:
                    break
                bufs[fd] += chunk
    try:
        decided = json.loads(bytes(verdict).split(b"\n", 1)[0]) if b"\n" in verdict else None
    except ValueError:
        decided = None
    truncated = truncated or len(out) + len(err) > max_output
    return (bytes(out[:max_output]), bytes(err[: max(0, max_output - len(out))]), decided, timed_out, truncated)


def _memfd(name: str, data: bytes) -> int:
    """An anonymous memory file holding `data`, at offset 0: no path anywhere; close-on-exec."""
    fd = os.memfd_create(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# ------------------------------------------------------------------------------------ memory as a whole

_cgroup_lock = threading.Lock()
_cgroup_count = 0


@functools.lru_cache(maxsize=1)
def _cgroup_parent() -> tuple[str, str] | None:
    """(this process's memory cgroup folder, its limit file's name) where runs can get cgroups of their own:
    as root, with cgroup v1's memory controller (a hybrid host keeps it there) or v2's enabled for children.
    None elsewhere (not root, no cgroup file system, or it is read-only), and RLIMIT_AS alone limits memory."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            candidates = [(f"/sys/fs/cgroup/memory{path}", "memory.limit_in_bytes")]
            break
    else:
        path = next((p for hier, c, p in lines if hier == "0" and c == ""), None)
        candidates = [(f"{mount}{path}", "memory.max") for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")] \
            if path is not None else []
    for folder, limit_file in candidates:
        folder = folder.rstrip("/")
        if limit_file == "memory.max":  # v2: the controller must be enabled for this cgroup's children
            try:
                with open(os.path.join(folder, "cgroup.subtree_control")) as f:
                    if "memory" not in f.read().split():
                        continue
            except OSError:
                continue
        if os.path.isdir(folder) and os.access(folder, os.W_OK) and _cgroup_works(folder, limit_file):
            return folder, limit_file
    return None


def _cgroup_works(parent: str, limit_file: str) -> bool:
    """Can a child cgroup be made, capped and entered here? Tried once with a shell, as each run enters it:
    a run whose shell could not move in would never start its program."""
    folder = os.path.join(parent, f"ladder-sandbox-{os.getpid()}-probe")
    if not _new_cgroup(folder, limit_file, 64 << 20):
        return False
    try:
        return subprocess.run(_in_cgroup(folder, ["/bin/true"]), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_cgroup(folder)


def _memory_cgroup(limit_bytes: int) -> str | None:
    """A fresh cgroup for one run, its memory capped at limit_bytes: the program's forked children, SysV and
    memfd shared memory and its tmpfs all count there, while RLIMIT_AS caps each process's address space
    alone (3 children x 400 MB, or 24 memfds x 32 MB, held over a GB of the trainer's host under a 512 MB
    limit). At the cap the kernel kills inside the cgroup: the run fails. None where none can be made."""
    global _cgroup_count
    parent = _cgroup_parent()
    if parent is None:
        return None
    with _cgroup_lock:
        _cgroup_count += 1
        folder = os.path.join(parent[0], f"ladder-sandbox-{os.getpid()}-{_cgroup_count}")
    return folder if _new_cgroup(folder, parent[1], limit_bytes) else None


def _new_cgroup(folder: str, limit_file: str, limit_bytes: int) -> bool:
    """Make the cgroup `folder` with its memory capped; False (and nothing left behind) where that fails."""
    try:
        os.mkdir(folder)
        with open(os.path.join(folder, limit_file), "w") as f:
            f.write(str(limit_bytes))
        return True
    except OSError:
        _remove_cgroup(folder)
        return False


def _remove_cgroup(folder: str) -> None:
    """rmdir once its last process is gone (the jail's PID namespace ends them all; reaping takes a moment)."""
    for _ in range(1000):
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.001)


def _in_cgroup(folder: str | None, argv: list[str]) -> list[str]:
    """argv started inside the cgroup: a shell moves itself in, then becomes argv (exec), so nothing runs
    outside it for a moment."""
    if folder is None:
        return argv
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', os.path.join(folder, "cgroup.procs"), *argv]


def _run(code: str, tests: str, jail: str, *, timeout: float, memory_mb: int, max_output: int,
         max_procs: int = 32, disk_mb: int = 32) -> SandboxResult:
    root = os.geteuid() == 0
    disk = disk_mb << 20
    job = {
        "program": code, "site": _site_packages(), "isolate": jail == "setuid",
        "root": {**_root_layout(), "disk": disk}, "uid": _next_uid() if root and jail != "unsafe" else None,
        "rlimits": {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": int(timeout) + 1, "RLIMIT_FSIZE": disk,
                    "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256},
    }
    if jail != "unsafe":  # as yourself without a user namespace it would count all of your processes
        job["rlimits"]["RLIMIT_NPROC"] = max_procs
    header = json.dumps({"timeout": timeout, "memory": JUDGE_MEMORY, "max_message": MAX_MESSAGE}).encode()
    mine = []  # fds this process must close
    workdir = proc = cgroup = None
    try:
        code_fd = _memfd("ladder-program", _program_code())
        mine.append(code_fd)
        job_fd = _memfd("ladder-job", repr(job).encode("utf-8"))
        mine.append(job_fd)
        tests_fd = _memfd("ladder-tests", tests.encode("utf-8", "surrogatepass"))
        mine.append(tests_fd)
        request_r, request_w = os.pipe()  # judge -> program
        mine += [request_r, request_w]
        reply_r, reply_w = os.pipe()  # program -> judge
        mine += [reply_r, reply_w]
        verdict_r, verdict_w = os.pipe()  # judge -> here
        mine += [verdict_r, verdict_w]
        _judges.submit(header, [request_w, reply_r, verdict_w, tests_fd])
        for fd in (request_w, reply_r, verdict_w, tests_fd):  # the judge has its own copies now
            os.close(fd)
            mine.remove(fd)
        python = [sys.executable, "-I", "-S", "-B", "-c", BOOT, str(code_fd), str(job_fd), str(request_r), str(reply_w)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}
        if jail == "bwrap":
            argv, cwd = _bwrap_args(disk) + python, "/"
        elif jail == "setuid":
            argv, cwd = python, "/"
        else:
            workdir = tempfile.mkdtemp(prefix="ladder-sandbox-")
            env.update(HOME=workdir, TMPDIR=workdir)
            argv, cwd = python, workdir
        if jail != "unsafe":
            cgroup = _memory_cgroup(memory_mb << 20)
        proc = subprocess.Popen(_in_cgroup(cgroup, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=[code_fd, job_fd, request_r, reply_w], env=env,
                                cwd=cwd, start_new_session=True, close_fds=True)
        with proc:
            for fd in (code_fd, job_fd, request_r, reply_w):  # the program's ends: only the program holds them now
                os.close(fd)
                mine.remove(fd)
            out, err, verdict, timed_out, truncated = _collect(proc, verdict_r, timeout, max_output)
            proc.wait()
    finally:
        for fd in mine:
            os.close(fd)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        if cgroup:
            _remove_cgroup(cgroup)
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    ok = bool(verdict and verdict.get("ok") is True) and not timed_out and not truncated
    if timed_out:
        reason = f"timeout after {timeout:g} s"
    elif truncated:
        reason = f"output over {max_output} bytes"
    elif verdict is None:
        reason = "the judge ended without a verdict"
    else:
        reason = str(verdict.get("reason") or ("passed" if ok else "failed"))
        detail = str(verdict.get("detail") or "")
        if detail:
            stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + detail + "\n"
    return SandboxResult(ok, proc.returncode, stdout, stderr, timed_out, reason)


_jail_lock = threading.Lock()
_problems: dict[str, str | None] = {}  # jail kind -> None if it works here, else why not (probed once)
KINDS = ("bwrap", "setuid", "unsafe")


def probe(kind: str) -> str | None:
    """None if the jail `kind` works on this machine, else a few words on why not. Cached."""
    with _jail_lock:
        if kind not in _problems:
            version = _bwrap_version() if kind == "bwrap" and shutil.which("bwrap") else None
            if kind not in KINDS:
                _problems[kind] = f"'{kind}' is not one of {', '.join(KINDS)}"
            elif kind == "bwrap" and not shutil.which("bwrap"):
                _problems[kind] = "bwrap is not installed"
            elif kind == "bwrap" and (version is None or version < BWRAP_MIN):
                _problems[kind] = (f"bubblewrap {'.'.join(map(str, version)) if version else '(unknown version)'} "
                                   f"is older than {'.'.join(map(str, BWRAP_MIN))}: its tmpfs has no size cap")
            elif kind == "setuid" and os.geteuid() != 0:
                _problems[kind] = "the setuid jail needs root"
            elif kind == "setuid" and _root_layout()["mountpoint"] is None:
                _problems[kind] = "no host directory to build the jail's root on"
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
                      "bubblewrap 0.7 or newer (apt-get install bubblewrap) or run as root; LADDER_SANDBOX=unsafe "
                      "runs it with resource limits only")


def run_python(code: str, *, tests: str = "", timeout: float = 5.0, memory_mb: int = 512,
               max_output: int = 64_000, max_procs: int = 32, disk_mb: int = 32,
               jail_kind: str | None = None) -> SandboxResult:
    """Run `code` in a jail, then `tests` (Python asserts calling its functions) in a judge process.

    ok is True only if the program ran and the tests then ran to the end within the limits (see the module
    docstring for what that rests on). `jail_kind` overrides the automatic choice (tests use it to
    exercise each jail); a kind that does not work here is a LadderError."""
    if jail_kind is not None:
        problem = probe(jail_kind)
        if problem is not None:
            raise LadderError(f"sandbox jail '{jail_kind}' does not work here: {problem}")
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
