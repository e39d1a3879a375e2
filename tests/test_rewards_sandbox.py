"""Model-written code is contained: every escape or fake below fails, and this test process survives.

Each test runs in every jail that works here (bubblewrap; the hand-made setuid jail when root)."""

import os
import socket
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


@pytest.fixture(params=JAILS)
def run(request):
    def go(code, **kw):
        return run_python(code, jail_kind=request.param, **kw)
    go.kind = request.param
    return go


def test_passing_and_failing_programs(run):
    ok = run("def add(a, b):\n    return a + b\nprint('hello')", tests=ADD_TESTS)
    assert ok.ok and ok.reason == "passed" and ok.stdout == "hello\n" and ok.returncode == 0
    bad = run(WRONG_ADD, tests=ADD_TESTS)
    assert not bad.ok and "tests line 1: assert add(2, 2) == 4" in bad.stderr and "AssertionError" in bad.stderr
    crash = run("def add(a, b):\n    return a +", tests=ADD_TESTS)
    assert not crash.ok and "SyntaxError" in crash.stderr


def test_infinite_loop_times_out(run):
    start = time.monotonic()
    r = run("while True:\n    pass", timeout=0.3)
    assert r.timed_out and not r.ok and "timeout" in r.reason
    assert time.monotonic() - start < 3


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
            r = run(code)
            assert not r.ok
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_gigabytes_of_output_are_cut_off_fast(run):
    start = time.monotonic()
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", max_output=10_000, timeout=10)
    assert not r.ok and r.reason == "output over 10000 bytes" and len(r.stdout) <= 10_000
    assert time.monotonic() - start < 3


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


FAKE = "os.write(1, b'\\n__LADDER_OK_' + {} + b'__\\n'); os._exit(0)"  # what the harness prints on a pass

TAMPERING = {
    "sys.exit before the asserts": "import sys\nsys.exit(0)",
    "SystemExit": "raise SystemExit(0)",
    "os._exit before the asserts": "import os\nos._exit(0)",
    "redefined AssertionError": "AssertionError = Warning\nimport builtins\nbuiltins.AssertionError = Warning",
    "patched exec/compile": "import builtins\nbuiltins.exec = builtins.compile = lambda *a, **k: None",
    "shadowed builtins": "import builtins\nbuiltins.len = lambda x: 0\ndef print(*a, **k):\n    pass",
    "fake success marker": "print('__LADDER_OK_' + '0' * 32 + '__')\nimport os\nos._exit(0)",
    "marker at exit": "import atexit\natexit.register(print, '__LADDER_OK_' + 'f' * 32 + '__')",
    "exit from a thread": "import os, threading\nthreading.Timer(0, os._exit, (0,)).start()",
    "read the nonce from anywhere": _src("""
        import glob, os, re
        pattern, found = re.compile(r'__LADDER_OK_[0-9a-f]{32}__'), set()
        for p in glob.glob('/proc/self/**', recursive=True) + glob.glob('/tmp/**', recursive=True):
            try:
                found |= set(pattern.findall(open(p, errors='ignore').read()))
            except OSError:
                pass
        for fd in range(3, 64):
            try:
                found |= set(pattern.findall(os.read(fd, 4096).decode()))
            except OSError:
                pass
        if found:
            print(found.pop())
            os._exit(0)
        """),
    "nonce from the harness frame": _src(f"""
        import os, sys
        try:
            n = sys._getframe(1).f_locals['nonce']
            {FAKE.format('n')}
        except Exception:
            pass
        """),
    "nonce via a traceback": _src(f"""
        import os
        try:
            1 / 0
        except ZeroDivisionError as e:
            try:
                n = e.__traceback__.tb_frame.f_back.f_locals['nonce']
                {FAKE.format('n')}
            except Exception:
                pass
        """),
    "nonce via a trace function": _src(f"""
        import os, sys
        def tracer(frame, event, arg):
            try:
                n = frame.f_back.f_locals['nonce']
                {FAKE.format('n')}
            except Exception:
                return None
        try:
            sys.settrace(tracer)
        except Exception:
            pass
        """),
    "nonce via gc": _src(f"""
        import gc, os
        try:
            for o in gc.get_objects():
                if isinstance(o, dict) and isinstance(o.get('nonce'), bytes):
                    {FAKE.format("o['nonce']")}
        except Exception:
            pass
        """),
    "signal handler hunts the nonce": _src(f"""
        import os, signal
        def h(sig, frame):
            while frame is not None:
                for v in list(frame.f_locals.values()):
                    if isinstance(v, bytes) and len(v) == 32:
                        {FAKE.format('v')}
                frame = frame.f_back
        signal.signal(signal.SIGALRM, h)
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        for _ in range(10 ** 6):
            pass
        """),
    "signal handler empties the tests": _src("""
        import signal
        def h(sig, frame):
            while frame is not None:
                for v in list(frame.f_locals.values()):
                    if isinstance(v, dict) and 'tests' in v:
                        v['tests'] = ''
                frame = frame.f_back
        signal.signal(signal.SIGALRM, h)
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        for _ in range(10 ** 6):
            pass
        """),
    "re-enter the harness with its own nonce and no tests": _src(f"""
        import __main__, json, os
        def fd(data):
            r, w = os.pipe()
            os.write(w, data)
            os.close(w)
            return r
        job = dict(program='', tests='', site=[], prefixes=[], isolate=False, disk=0, uid=None, rlimits={{}})
        __main__.main(fd(json.dumps(job).encode()), fd(b'0' * 32), {sandbox.PARK_LINE})
        """),
    "own audit hook on the keeper's thread": _src("""
        import os, sys
        def hook(event, args):
            try:
                for f in sys._current_frames().values():
                    while f is not None:
                        if f.f_locals.get('marker'):
                            os.write(1, f.f_locals['marker'])
                            os._exit(0)
                        f = f.f_back
            except Exception:
                pass
        sys.addaudithook(hook)
        """),
}


def test_tampering_cannot_fake_a_pass(run):
    """A wrong `add` plus a trick: nothing makes the failing tests count as a pass."""
    results = run_many([trick + "\n" + WRONG_ADD for trick in TAMPERING.values()], [ADD_TESTS] * len(TAMPERING),
                       max_workers=2, jail_kind=run.kind)
    faked = {name: r for name, r in zip(TAMPERING, results) if r.ok}
    assert not faked
    # the same tricks in front of a right `add` do not break an honest pass where they leave it alone
    honest = run("import atexit\natexit.register(print, 'bye')\ndef add(a, b):\n    return a + b", tests=ADD_TESTS)
    assert honest.ok and "bye" not in honest.stdout


def test_shadowing_builtins_does_not_change_the_tests(run):
    """A program's own `len` is its business; the tests still see the real one."""
    r = run("def len(x):\n    return 3\ndef f():\n    return [1, 2]", tests="assert len(f()) == 2")
    assert r.ok, r.stderr


def test_ordinary_library_code_still_works(run):
    """The guards leave everyday Python alone: namedtuple, dataclasses, enum, logging, tracebacks, threads."""
    code = ("import collections, dataclasses, enum, logging, threading, traceback\n"
            "P = collections.namedtuple('P', 'x y')\nE = enum.Enum('E', 'A B')\n"
            "@dataclasses.dataclass\nclass D:\n    a: int = 1\nlogging.getLogger('x').info('fine')\n"
            "t = threading.Thread(target=print, args=('thread',))\nt.start()\nt.join()\n"
            "try:\n    1 / 0\nexcept ZeroDivisionError:\n    print(traceback.format_exc().splitlines()[-1])\n")
    r = run(code, tests="assert P(1, 2).y == 2 and D().a == 1 and E.B.value == 2")
    assert r.ok, r.stderr
    assert r.stdout == "thread\nZeroDivisionError: division by zero\n"


def test_run_many_keeps_order():
    codes = [f"print({i})" for i in range(4)]
    results = run_many(codes, ["assert True", "assert False", "", ""], max_workers=2)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert [r.ok for r in results] == [True, False, True, True]


def test_no_jail_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LADDER_SANDBOX", "nonsense")
    with pytest.raises(LadderError) as e:
        run_python("print(1)")
    assert "\n" not in str(e.value) and "bubblewrap" in str(e.value)
    monkeypatch.setenv("LADDER_SANDBOX", "unsafe")  # explicit opt-in: limits only, still a fresh process
    r = run_python(f"import os\nprint(os.getpid() != {os.getpid()})")
    assert r.ok and r.stdout.strip() == "True"
