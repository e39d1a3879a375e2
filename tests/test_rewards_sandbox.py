"""Model-written code is contained and cannot fake a pass: every escape or trick below fails, and this
test process survives.

Each test runs in every jail that works here (bubblewrap; the hand-made setuid jail when root). Every
trick that hunts for the tests is also run once with the tests planted where it looks (`LEAK`): there it
passes, so its failing in the sandbox is the sandbox's doing, not a broken trick.
"""

import json
import os
import socket
import stat
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ladder.errors import LadderError
from ladder.rewards import sandbox
from ladder.rewards.sandbox import run_many, run_python

JAILS = [kind for kind in ("bwrap", "setuid") if sandbox.probe(kind) is None]
pytestmark = pytest.mark.skipif(not JAILS, reason="no sandbox jail works here (install bubblewrap)")

ADD_TESTS = "assert add(2, 2) == 4\nassert add(-1, 1) == 0"
WRONG_ADD = "def add(a, b):\n    return a - b\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(params=JAILS)
def run(request):
    def go(code, **kw):
        return run_python(code, jail_kind=request.param, **kw)
    go.kind = request.param
    return go


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def test_passing_and_failing_programs(run):
    ok = run(RIGHT_ADD + "print('hello')", tests=ADD_TESTS)
    assert ok.ok and ok.reason == "passed" and ok.stdout == "hello\n" and ok.returncode == 0
    bad = run(WRONG_ADD, tests=ADD_TESTS)
    assert not bad.ok and "tests line 1: assert add(2, 2) == 4" in bad.stderr and "AssertionError" in bad.stderr
    crash = run("def add(a, b):\n    return a +", tests=ADD_TESTS)
    assert not crash.ok and "SyntaxError" in crash.stderr and crash.reason == "program failed: SyntaxError"
    missing = run("x = 1", tests=ADD_TESTS)
    assert not missing.ok and "NameError" in missing.stderr


def test_infinite_loop_times_out(run):
    start = time.monotonic()
    r = run("while True:\n    pass", timeout=0.3)
    assert r.timed_out and not r.ok and "timeout" in r.reason
    assert time.monotonic() - start < 3
    r = run("import time\ndef add(a, b):\n    time.sleep(60)", tests=ADD_TESTS, timeout=0.5)  # hangs in a call
    assert r.timed_out and not r.ok


def _sandbox_processes() -> int:
    """Processes running as one of the sandbox's own uids."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        count += sandbox.UID_BASE <= uid < sandbox.UID_BASE + 64 * 64
    return count


def test_fork_bomb_is_bounded_and_cleaned_up(run):
    start = time.monotonic()
    r = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", timeout=0.6)
    assert not r.ok and r.timed_out and time.monotonic() - start < 5
    for _ in range(40):  # the kernel reaps the killed namespace within moments
        if _sandbox_processes() == 0:
            break
        time.sleep(0.05)
    assert _sandbox_processes() == 0  # nothing it forked is left behind


def test_memory_bomb_is_refused(run):
    for code in ("x = bytearray(8 << 30)", "a = []\nwhile True:\n    a.append(bytearray(16 << 20))"):
        r = run(code, memory_mb=128)
        assert not r.ok and "MemoryError" in r.stderr and not r.timed_out


# Ways to hold memory that a per-process address-space limit never counts, each as (code, a count over the
# run's 128 MB, a count under it): forked children, memfd files, SysV shared memory attached one at a time.
HOLDERS = {
    "forked children": ("""import os, time
pids = []
for _ in range({n}):
    pid = os.fork()
    if pid == 0:
        x = b'\\x01' * (60 << 20)
        time.sleep(1)
        os._exit(0)
    pids.append(pid)
if all(os.waitpid(p, 0)[1] == 0 for p in pids):
    print('held')""", 4, 1),
    "memfd files": ("""import os
fds = []
for _ in range({n}):
    fd = os.memfd_create('m')
    os.posix_fallocate(fd, 0, 32 << 20)
    fds.append(fd)
print('held')""", 8, 2),
    "SysV shared memory": ("""import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
for _ in range({n}):
    segment = libc.shmget(0, 60 << 20, 0o1600)
    address = libc.shmat(segment, None, 0)
    ctypes.memset(address, 1, 60 << 20)
    libc.shmdt(ctypes.c_void_p(address))
print('held')""", 3, 1),
}


def _run_cgroups() -> list[str]:
    parent = sandbox._cgroup_parent()
    return [d for d in os.listdir(parent[0]) if d.startswith(f"ladder-sandbox-{os.getpid()}-")] if parent else []


@pytest.mark.skipif(sandbox._cgroup_parent() is None, reason="needs root and a writable memory cgroup")
@pytest.mark.parametrize("how", list(HOLDERS))
def test_memory_is_capped_for_the_whole_run(run, how):
    """RLIMIT_AS counts one process's address space: children, memfd and SysV segments each held their own,
    over a GB of the host under a 512 MB limit. A run's memory cgroup caps them together; a smaller amount of
    the same still runs (so the trick works, and it is the cap that stops it)."""
    code, over, under = HOLDERS[how]
    assert run(code.format(n=under), memory_mb=128).stdout.strip() == "held"
    assert "held" not in run(code.format(n=over), memory_mb=128).stdout
    assert _run_cgroups() == []  # each run's cgroup is gone with it


@pytest.mark.skipif(sandbox._cgroup_parent() is None, reason="needs root and a writable memory cgroup")
def test_a_cgroup_that_cannot_be_entered_is_not_used(monkeypatch):
    """Each run's shell moves itself into its cgroup before it becomes the program: where that fails, the
    program would never start, so the probe must say no and runs keep RLIMIT_AS alone."""
    folder, limit_file = sandbox._cgroup_parent()
    assert sandbox._cgroup_works(folder, limit_file)
    monkeypatch.setattr(sandbox, "_in_cgroup", lambda cgroup, argv: ["/bin/false"])
    assert not sandbox._cgroup_works(folder, limit_file)
    assert _run_cgroups() == []


def test_without_a_memory_cgroup_a_run_still_works(run, monkeypatch):
    """Not root, or no writable cgroup file system: RLIMIT_AS alone, as before."""
    monkeypatch.setattr(sandbox, "_memory_cgroup", lambda limit: None)
    assert run(RIGHT_ADD, tests=ADD_TESTS).ok


def test_writes_outside_its_directory_do_not_land(run, tmp_path):
    targets = [f"/tmp/ladder-escape-{uuid.uuid4().hex}", str(tmp_path / "escape"),
               str(Path(__file__).resolve().parent / f"escape-{uuid.uuid4().hex}")]
    code = "import os\nopen('mine.txt', 'w').write('ok')\nassert open('mine.txt').read() == 'ok'\n"
    code += "".join(f"try:\n    open({t!r}, 'w').write('x')\nexcept OSError:\n    pass\n" for t in targets)
    r = run(code)
    assert r.ok, r.stderr  # its own working directory is writable
    for target in targets:
        assert not os.path.exists(target)


def test_no_network(run):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.3)
    port = server.getsockname()[1]
    r = run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')")
    with pytest.raises(socket.timeout):
        server.accept()  # no connection ever arrived
    server.close()
    assert not r.ok and "connected" not in r.stdout


def test_the_host_file_system_is_not_in_the_jail(run):
    """Only the jail's own root: world-readable host files, world-writable host dirs (/run/lock) and host
    unix sockets are not there (the hand-made jail used to show all of them)."""
    secret, content = "ladder-host-" + uuid.uuid4().hex, "ladder-secret-" + uuid.uuid4().hex
    planted, sockets = [], []
    for folder in ("/var/tmp", "/opt", "/run/lock", "/srv", "/mnt"):
        if os.path.isdir(folder) and os.access(folder, os.W_OK):
            path = Path(folder) / f"{secret}.txt"
            path.write_text(content)
            path.chmod(0o644)
            planted.append(path)
    lock = Path("/run/lock") if os.path.isdir("/run/lock") else Path("/var/tmp")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = lock / f"{secret}.sock"
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    server.listen(1)
    server.settimeout(0.3)
    sockets.append(sock_path)
    try:
        code = _src(f"""
            import os, socket
            for path in {[str(p) for p in planted]!r}:
                try:
                    print(open(path).read())
                except OSError as e:
                    print(path, type(e).__name__)
            for folder in ('/run/lock', '/var/tmp', '/opt', '/dev/shm', '/run'):
                try:
                    open(folder + '/{secret}-written', 'w').write('x')
                except OSError:
                    pass
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect({str(sock_path)!r})
                print('connected')
            except OSError:
                pass
            print('ROOT', sorted(os.listdir('/')))
            """)
        r = run(code)
        assert r.ok, r.stderr
        assert content not in r.stdout and "connected" not in r.stdout and "FileNotFoundError" in r.stdout
        with pytest.raises(socket.timeout):
            server.accept()
        for folder in ("/run/lock", "/var/tmp", "/opt", "/dev/shm", "/run"):
            assert not os.path.exists(f"{folder}/{secret}-written")
        allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "tmp"}
        allowed |= {p.strip("/").split("/")[0] for p in sandbox._prefixes()}
        root = eval(next(line for line in r.stdout.splitlines() if line.startswith("ROOT "))[5:])
        assert set(root) <= allowed, set(root) - allowed
    finally:
        server.close()
        for path in planted + sockets:
            path.unlink(missing_ok=True)


def test_the_program_holds_only_its_own_pipes(run):
    """Its file descriptors: stdin (/dev/null), stdout, stderr and its two pipe ends to the judge, one
    read-only and one write-only. Nothing of the judge's, the judge server's or the trainer's."""
    code = _src("""
        import fcntl, os, stat
        for fd in range(256):
            try:
                mode = os.fstat(fd).st_mode
            except OSError:
                continue
            print(fd, 'pipe' if stat.S_ISFIFO(mode) else 'char' if stat.S_ISCHR(mode) else 'other',
                  fcntl.fcntl(fd, fcntl.F_GETFL) & 3)
        """)
    r = run(code)
    assert r.ok, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert [kind for _, kind, _ in rows] == ["char", "pipe", "pipe", "pipe", "pipe"], rows
    assert sorted(access for _, _, access in rows[3:]) == ["0", "1"]  # O_RDONLY, O_WRONLY


def test_parent_environment_does_not_leak(run, monkeypatch):
    secret = "ladder-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("LADDER_SECRET", secret)
    code = ("import os\nprint(dict(os.environ))\n"
            "for p in ('/proc/self/environ', '/proc/1/environ', f'/proc/{os.getppid()}/environ'):\n"
            "    try:\n        print(open(p).read())\n    except OSError as e:\n        print(e)\n")
    r = run(code)
    assert secret not in r.stdout + r.stderr and "LADDER_SECRET" not in r.stdout
    assert "'HOME': '/tmp'" in r.stdout


def test_killing_its_parent_or_everything_fails(run):
    bystander = subprocess.Popen(["sleep", "30"])  # a process of ours it must not reach
    try:
        for code in ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
                     "import os, signal\nos.kill(-1, signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)"):
            r = run(code + "\n" + WRONG_ADD, tests=ADD_TESTS)
            assert not r.ok
        assert bystander.poll() is None
        assert run(RIGHT_ADD, tests=ADD_TESTS).ok  # the judge server is still there (or back)
    finally:
        bystander.kill()
        bystander.wait()


def test_gigabytes_of_output_are_cut_off_fast(run):
    start = time.monotonic()
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", max_output=10_000, timeout=10)
    assert not r.ok and r.reason == "output over 10000 bytes" and len(r.stdout) <= 10_000
    assert time.monotonic() - start < 3


# Programs that look for the tests where the old single-process harness kept them (its frames, the gc,
# raw memory) and, if found, answer from a lookup table built from the asserts.
LOOKUP = _src(r"""
    import re
    TABLE = {}
    def learn(text):
        if isinstance(text, str):
            for args, want in re.findall(r"assert add\(([-\d, ]+)\) == (-?\d+)", text):
                TABLE[args.replace(' ', '')] = int(want)
    def add(a, b):
        return TABLE.get(f"{a},{b}", 12345)
    """)
LEAK = "LEAK = ''.join(['assert add(2, 2) == 4', chr(10), 'assert add(-1, 1) == 0'])\n"
HUNTS = {
    "the caller's frames": """
        import sys
        f = sys._getframe()
        while f is not None:
            for v in list(f.f_locals.values()) + list(f.f_globals.values()):
                for s in (v if isinstance(v, (tuple, list)) else (v,)):
                    learn(s)
            f = f.f_back
        """,
    "a traceback's frames": """
        try:
            1 / 0
        except ZeroDivisionError as e:
            f = e.__traceback__.tb_frame
            while f is not None:
                for v in list(f.f_locals.values()):
                    for s in (v if isinstance(v, (tuple, list)) else (v,)):
                        learn(s)
                f = f.f_back
        """,
    "every object the gc knows": """
        import gc
        for o in gc.get_objects():
            for v in (o.values() if isinstance(o, dict) else o if isinstance(o, (tuple, list)) else ()):
                learn(v)
        """,
    "a signal handler's frames": """
        import signal
        def hunt(sig, frame):
            while frame is not None:
                for v in list(frame.f_locals.values()) + list(frame.f_globals.values()):
                    for s in (v if isinstance(v, (tuple, list)) else (v,)):
                        learn(s)
                frame = frame.f_back
        signal.signal(signal.SIGALRM, hunt)
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        for _ in range(10 ** 6):
            if TABLE:
                break
        """,
    "raw memory through ctypes": """
        import ctypes
        # Read the allocator's 16 KiB pools around fresh objects of every small size, where the old
        # harness's strings sat (it read them with c_char_p(address).value, which raises no audit event).
        seen = set()
        for p in [bytes(n) for n in range(0, 480, 4) for _ in range(300)]:
            base = id(p) & ~0x3FFF
            if base not in seen and not TABLE:
                seen.add(base)
                raw = (ctypes.c_char * 0x4000).from_address(base).raw
                at = raw.find(b"assert add(")
                while at >= 0:
                    learn(raw[at:raw.find(b"\\0", at)].decode("latin-1"))
                    at = raw.find(b"assert add(", at + 1)
        """,
}


def _hunt(name: str, leak: bool) -> str:
    return (LEAK if leak else "") + LOOKUP + "\n" + _src(HUNTS[name])


def test_the_tests_are_nowhere_in_the_programs_process(run):
    """Frames, tracebacks, gc, signal handlers, raw memory: the tests are in the judge, not there.
    (The old harness lost to each of these on Python <= 3.12; the raw-memory read found its pass token.)"""
    names = list(HUNTS)
    planted = run_many([_hunt(n, leak=True) for n in names], [ADD_TESTS] * len(names), max_workers=2,
                       jail_kind=run.kind)
    assert [r.ok for r in planted] == [True] * len(names), [(n, r.stderr[-300:]) for n, r in zip(names, planted)]
    hidden = run_many([_hunt(n, leak=False) for n in names], [ADD_TESTS] * len(names), max_workers=2,
                      jail_kind=run.kind)
    assert not [n for n, r in zip(names, hidden) if r.ok]


TOKEN_HUNT = _src("""
    import ctypes, os, time
    found, seen, start = [], set(), time.monotonic()
    sizes = list(range(48, 64)) + list(range(0, 480, 4))  # the old token's size class first
    for p in [bytes(n) for n in sizes for _ in range(300)]:
        addr = base = id(p) & ~0x3FFF
        if base in seen or found or time.monotonic() > start + 3:
            continue
        seen.add(base)
        while addr < base + 0x4000 and not found:
            v = ctypes.c_char_p(addr).value  # no audit event: the old harness's hook let it through
            if v and b"__LADDER_OK_" in v and b"0" * 32 not in v:
                found.append(v[v.index(b"__LADDER_OK_"):][:46])
            addr += len(v) + 1 if v else 1
    os.write(1, b"\\n" + (found or [b"__LADDER_OK_" + b"0" * 32 + b"__"])[0] + b"\\n")
    os._exit(0)
    """)


def test_a_function_never_defined_scores_nothing_whatever_the_program_prints(run):
    """The old harness's pass token, read from memory through ctypes, scored 1.0 for tests calling a
    function the program never defined. Now nothing a program prints, or how it exits, is evidence."""
    tricks = [TOKEN_HUNT, "import sys\nprint(42)\nsys.exit(0)", "import os\nos.write(1, b'passed')\nos._exit(0)",
              "print('ok')"]
    results = run_many(tricks, ["assert never_defined(1) == 2"] * len(tricks), max_workers=2, jail_kind=run.kind)
    assert [r.ok for r in results] == [False] * len(tricks)
    assert all("NameError" in r.stderr or "program failed" in r.reason for r in results)


ALWAYS_EQUAL = _src("""
    class Yes:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = object.__hash__
    """)

TAMPERING = {
    # values that lie about equality: they cross as plain values, or as handles that equal only themselves
    "always-equal object": ALWAYS_EQUAL + "\ndef add(a, b):\n    return Yes()",
    "int subclass with __eq__": "class I(int):\n    def __eq__(self, o):\n        return True\n"
                                "    __hash__ = int.__hash__\ndef add(a, b):\n    return I(7)",
    "str subclass with __eq__": "class S(str):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n"
                                "    return S('x')",
    "list of always-equal": ALWAYS_EQUAL + "\ndef add(a, b):\n    return [Yes()]",
    "object with __reduce__": "import os\nclass R:\n    def __reduce__(self):\n        return (os._exit, (0,))\n"
                              "def add(a, b):\n    return R()",
    "a generator": "def add(a, b):\n    yield a + b",
    "a class": "def add(a, b):\n    return int",
    "recursion bomb": "def add(a, b):\n    return add(a, b)",
    "deeply nested result": "def add(a, b):\n    x = []\n    for _ in range(10 ** 5):\n        x = [x]\n    return x",
    "self-referential result": "def add(a, b):\n    x = []\n    x.append(x)\n    return x",
    # exits and exceptions
    "sys.exit before the asserts": "import sys\nsys.exit(0)\n" + RIGHT_ADD,
    "SystemExit": "raise SystemExit(0)",
    "os._exit before the asserts": "import os\nos._exit(0)",
    "os._exit in the call": "import os\ndef add(a, b):\n    os._exit(0)",
    "SystemExit in the call": "def add(a, b):\n    raise SystemExit(0)",
    "exit from a thread": "import os, threading\nthreading.Timer(0, os._exit, (0,)).start()\n" + WRONG_ADD,
    "marker at exit": "import atexit\natexit.register(print, '__LADDER_OK_' + 'f' * 32 + '__')\n" + WRONG_ADD,
    # builtins and names
    "redefined AssertionError": "AssertionError = Warning\nimport builtins\nbuiltins.AssertionError = Warning\n"
                                + WRONG_ADD,
    "patched exec/compile": "import builtins\nbuiltins.exec = builtins.compile = lambda *a, **k: None\n" + WRONG_ADD,
    "shadowed builtins": "import builtins\nbuiltins.len = lambda x: 0\ndef print(*a, **k):\n    pass\n" + WRONG_ADD,
    "a fake math module": "class M:\n    @staticmethod\n    def isclose(*a, **k):\n        return True\nmath = M()\n"
                          + WRONG_ADD,
    # the pipes to the judge
    "fake protocol on stdout": "print('[\"ready\",[]]')\nprint('[\"ok\",4]')\nprint('{\"ok\": true}')\n" + WRONG_ADD,
    "garbage on the reply pipe": "import os, sys\nos.write(int(sys.argv[-1]), b'\\x00garbage\\n' * 100)\n" + WRONG_ADD,
    "deeply nested JSON": "import os, sys\ndef add(a, b):\n"
                          "    os.write(int(sys.argv[-1]), b'[\"ok\",' + b'[' * 10 ** 6 + b']' * 10 ** 6 + b']\\n')\n"
                          "    os._exit(0)",
    "a message over the cap": "import os, sys\ndef add(a, b):\n"
                              "    os.write(int(sys.argv[-1]), b'[\"ok\",\"' + b'x' * (9 << 20) + b'\"]\\n')\n"
                              "    os._exit(0)",
    "fake raise of a BaseException": "import os, sys\ndef add(a, b):\n    raise KeyboardInterrupt",
    "closed pipes": "import os, sys\nfor fd in sys.argv[-2:]:\n    os.close(int(fd))\n" + RIGHT_ADD,
}


def test_tampering_cannot_fake_a_pass(run):
    """A wrong (or no) `add` plus a trick: nothing makes the failing tests count as a pass."""
    results = run_many(list(TAMPERING.values()), [ADD_TESTS] * len(TAMPERING), max_workers=2, jail_kind=run.kind)
    faked = {name: r.reason for name, r in zip(TAMPERING, results) if r.ok}
    assert not faked
    assert all(r.reason != "the judge ended without a verdict" for r in results)
    # tricks that leave an honest program alone do not break its pass
    honest = run("import atexit\natexit.register(print, 'bye')\n" + RIGHT_ADD, tests=ADD_TESTS)
    assert honest.ok and "bye" not in honest.stdout


def test_stop_iteration_cannot_end_the_tests_early(run):
    """Raised in a call, StopIteration would end a test's map() early, as if every case had passed."""
    tests = "cases = [((2, 2), 4), ((-1, 1), 0)]\nassert all(map(lambda c: add(*c[0]) == c[1], cases))"
    assert run(RIGHT_ADD, tests=tests).ok
    r = run("def add(a, b):\n    raise StopIteration", tests=tests)
    assert not r.ok and "StopIteration" in r.stderr


def test_shadowing_builtins_does_not_change_the_tests(run):
    """A program's own `len` or `all` is its business; the tests still see the real ones."""
    r = run("def len(x):\n    return 3\ndef f():\n    return [1, 2]", tests="assert len(f()) == 2")
    assert r.ok, r.stderr
    r = run("def all(x):\n    return True\n" + WRONG_ADD, tests="assert all(add(a, a) == 2 * a for a in (1, 2))")
    assert not r.ok


def test_plain_values_cross_exactly(run):
    """What a test compares is the value Python would compare: tuples are not lists, True is not 1."""
    code = _src("""
        import collections, enum, fractions
        def values():
            return (1, [2.5, None], {"k": (3,)}, {4, 5}, frozenset({6}), b"\\x00b", True, 2 ** 20000, -0.0,
                    float("inf"), 1 + 2j, "é\\n\\"\\ud800", range(1, 9, 2))
        def as_list():
            return [1, 2]
        def counter():
            return collections.Counter("aab")
        def point():
            return collections.namedtuple("P", "x y")(1, 2)
        def squares(n):
            return (i * i for i in range(n))
        def echo(*args, **kwargs):
            return args, kwargs
        class Color(enum.Enum):
            RED = 1
        def red():
            return Color.RED
        def half():
            return fractions.Fraction(1, 2)
        """)
    tests = _src("""
        v = values()
        assert v == (1, [2.5, None], {"k": (3,)}, {4, 5}, frozenset({6}), b"\\x00b", True, 2 ** 20000, -0.0,
                     float("inf"), 1 + 2j, "é\\n\\"\\ud800", range(1, 9, 2))
        assert [type(x) for x in v] == [int, list, dict, set, frozenset, bytes, bool, int, float, float, complex,
                                        str, range]
        assert as_list() != (1, 2) and counter() == {"a": 2, "b": 1} and point() == (1, 2)
        assert list(squares(4)) == [0, 1, 4, 9]
        assert echo(1, (2,), x=[3]) == ((1, (2,)), {"x": [3]})
        assert red() == Color.RED and red().value == 1 and red() is red() and red() != 1
        assert half() != 0.5  # not plain data: a handle, equal only to itself
        """)
    r = run(code, tests=tests)
    assert r.ok, r.stderr


def test_the_tests_cannot_pass_a_function_to_the_program(run):
    r = run("def apply(f, x):\n    return f(x)", tests="assert apply(lambda x: x + 1, 1) == 2")
    assert not r.ok and "only plain data" in r.stderr


def test_tests_that_never_end_are_stopped(run):
    start = time.monotonic()
    r = run(RIGHT_ADD, tests="while True:\n    pass", timeout=0.5)
    assert not r.ok and r.timed_out and time.monotonic() - start < 3
    server = sandbox._judges.proc.pid
    for _ in range(60):  # the judge's own alarm ends it at the deadline plus a second
        if not _children(server):
            break
        time.sleep(0.05)
    assert not _children(server)


def _children(pid: int) -> list[int]:
    found = []
    for child in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat_line = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(child))
    return found


def test_ordinary_library_code_still_works(run):
    """Everyday Python runs in the program (namedtuple, dataclasses, enum, logging, tracebacks, threads), and
    tests reach its objects' attributes: each read is a call into the program, answered with plain data."""
    code = ("import collections, dataclasses, enum, logging, threading, traceback\n"
            "P = collections.namedtuple('P', 'x y')\nE = enum.Enum('E', 'A B')\n"
            "@dataclasses.dataclass\nclass D:\n    a: int = 1\nlogging.getLogger('x').info('fine')\n"
            "t = threading.Thread(target=print, args=('thread',))\nt.start()\nt.join()\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    print(traceback.format_exc().splitlines()[-1])\n")
    r = run(code, tests="assert P(1, 2) == (1, 2) and P(1, 2)[1] == 2 and D().a == 1 and E.B.value == 2")
    assert r.ok, r.stderr
    assert r.stdout == "thread\nZeroDivisionError: division by zero\n"


def test_run_many_keeps_order():
    codes = [f"print({i})" for i in range(4)]
    results = run_many(codes, ["assert True", "assert False", "", ""], max_workers=2)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert [r.ok for r in results] == [True, False, True, True]


def test_no_file_descriptors_leak_and_a_dead_judge_server_is_replaced():
    run_python(RIGHT_ADD, tests=ADD_TESTS)
    before = len(os.listdir("/proc/self/fd"))
    run_many([RIGHT_ADD, WRONG_ADD] * 4, [ADD_TESTS] * 8, max_workers=2)
    assert len(os.listdir("/proc/self/fd")) == before
    sandbox._judges.proc.kill()
    sandbox._judges.proc.wait()
    assert run_python(RIGHT_ADD, tests=ADD_TESTS).ok


def test_old_bubblewrap_is_refused(monkeypatch):
    """bubblewrap < 0.7 cannot cap its tmpfs: as root the hand-made jail is used, else a clear error."""
    monkeypatch.setattr(sandbox, "_bwrap_version", lambda: (0, 6, 1))
    monkeypatch.setattr(sandbox, "_problems", {})
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.delenv("LADDER_SANDBOX", raising=False)
    assert "0.7" in sandbox.probe("bwrap") and "0.6.1" in sandbox.probe("bwrap")
    with pytest.raises(LadderError, match="0.7"):
        run_python("print(1)", jail_kind="bwrap")
    if os.geteuid() == 0 and "setuid" in JAILS:
        assert sandbox.jail() == "setuid"
    monkeypatch.setattr(sandbox, "_problems", {})
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(LadderError, match=r"bwrap: bubblewrap 0\.6\.1 is older than 0\.7.*setuid: .*needs root"):
        sandbox.jail()


def test_no_jail_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LADDER_SANDBOX", "nonsense")
    with pytest.raises(LadderError) as e:
        run_python("print(1)")
    assert "\n" not in str(e.value) and "bubblewrap" in str(e.value)
    monkeypatch.setenv("LADDER_SANDBOX", "unsafe")  # explicit opt-in: limits only, still a fresh process
    r = run_python(f"import os\nprint(os.getpid() != {os.getpid()})")
    assert r.ok and r.stdout.strip() == "True"
    assert run_python(ALWAYS_EQUAL + "\ndef add(a, b):\n    return Yes()", tests=ADD_TESTS).ok is False


# The wire format on its own, in this process: every plain value comes back with its exact type.
def _program_side():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ladder_sandbox_program_test", sandbox.PROGRAM_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    return a == b and (not isinstance(a, float) or str(a) == str(b))


VALUES = [None, True, False, 0, -7, 2 ** 70, -(2 ** 40000), 0.1, -0.0, float("inf"), float("-inf"), float("nan"),
          1e308, complex(1, -2), complex(float("inf"), 0), "", "a\"b\\c\n\t\x00é\u2028\U0001f600\ud800",
          b"\x00\xff", bytearray(b"ab"), (), (1,), [1, [2, (3,)]], {"a": 1, (1, 2): [3], 4: None}, {1, "x", (2,)},
          frozenset({3}), range(0, 10, 3)]


def test_wire_round_trip_keeps_exact_types():
    import ladder.rewards.sandbox_judge as judge

    program = _program_side()
    link = judge.Link.__new__(judge.Link)
    link.remotes = {}
    for value in VALUES:
        decoded = json.loads(program.Encoder().dump(value), object_pairs_hook=link._tagged)
        assert _same(decoded, value), (value, decoded)
        env = {"__builtins__": {}, "inf": float("inf"), "nan": float("nan"), "complex": complex, "set": set,
               "frozenset": frozenset, "range": range, "bytearray": bytearray}
        assert _same(eval(judge.literal(value, link), env), value), value


def test_wire_refuses_what_is_not_a_message(tmp_path):
    import ladder.rewards.sandbox_judge as judge

    links = []

    def link_reading(data: bytes, max_message: int = 1 << 20):
        path = tmp_path / uuid.uuid4().hex
        path.write_bytes(data)
        links.append(judge.Link(os.open(os.devnull, os.O_WRONLY), os.open(path, os.O_RDONLY), max_message))
        return links[-1]

    try:
        _refuses(judge, link_reading)
    finally:
        for link in links:
            link.replies.close()
            os.close(link.out)


def _refuses(judge, link_reading):
    """Bad tags, unhashable keys, nesting too deep, huge ints in decimal, not UTF-8, not a list, no newline,
    over the size cap: each breaks the link (and so fails the run); a good message decodes."""
    link = link_reading(b'{"T": {"X": 1}}\n["ok", 1]\n')
    with pytest.raises(judge.LinkBroken):
        link.receive()
    with pytest.raises(judge.LinkBroken):  # broken stays broken, even with a good message next
        link.receive()
    for bad in (b'["ok", {"D": [[[1], 2]]}]', b'["ok", {"Q": 1}]', b'["ok", {"T": [1], "S": [2]}]',
                b'["ok", ' + b'[' * 100000 + b']' * 100000 + b']', b'["ok", {"H": "0", "t": "x"}]',
                b'["ok", 1' + b'0' * 5000 + b']', b'\xff\xfe', b'{"ok": 1}', b'[]', b'["ok", 1]'):
        with pytest.raises(judge.LinkBroken):
            link_reading(bad + (b"\n" if bad != b'["ok", 1]' else b"")).receive()  # the last one: no newline
    with pytest.raises(judge.LinkBroken, match="over 100 bytes"):
        link_reading(b'["ok", "' + b'x' * 200 + b'"]\n', max_message=100).receive()
    assert link_reading(b'["ok", {"T": [1, {"S": [2]}]}]\n').receive() == ["ok", (1, {2})]


def test_harness_files_are_real_modules():
    """The harnesses are files (linted, readable), run by path or from their compiled code, importing
    nothing from ladder."""
    for path in (sandbox.PROGRAM_FILE, sandbox.JUDGE_FILE):
        text = Path(path).read_text()
        assert "import ladder" not in text and "from ladder" not in text
        assert stat.S_ISREG(os.stat(path).st_mode)
