"""The judge side of the sandbox: runs a row's tests against a program that lives in another process.

ladder.rewards.sandbox starts one judge server per trainer process, `python -I -S -B <this file> SOCK_FD
SITE_JSON`. For each run it receives, over a unix socket, a small header and four file descriptors (the
pipes to and from that run's program, the verdict pipe, the tests in a memfd) and forks a judge for it:
a fork, not a new interpreter, so each run costs one Python start (the program's), not two.

A judge never runs model code and never holds anything the program can reach (it is another process,
outside the program's jail). It executes only the tests (the dataset's Python, trusted, time-limited), in
a namespace where each top-level name of the program is a `Remote` handle: calling one sends the call as
plain data to the program process and decodes the reply into fresh plain objects (int, str, list, tuple,
dict, set, ...) built here. So `==` in the tests is always Python's own comparison of the judge's values:
no object of the program's (an always-equal __eq__, an int subclass) is ever compared, and an object that
is not plain data stays a handle that equals only itself. The verdict is this process's: the tests
returned without an exception. Whatever the program prints, exits with, or writes to the pipe decides
nothing (garbage, or a pipe that closes, fails the run: `LinkBroken` is not an Exception, so the tests'
own `except Exception` cannot swallow it).

Not plain data, so not passed to the program: functions (a test calling `candidate(lambda x: x)` fails)
and the tests' own objects. Arguments are copies: a program that mutates its argument in place changes
nothing the tests see.
"""

import builtins
import json
import os
import resource
import signal
import socket
import sys

BIG_INT_BITS = 10_000  # as sandbox_program: huge ints cross as hex

# Standard modules a program may have imported that tests use without importing (MBPP's `math.isclose`):
# a program's name among these is bound to the judge's own import, whatever the program bound to it.
MODULES = frozenset({"math", "cmath", "re", "string", "collections", "itertools", "functools", "operator",
                     "heapq", "bisect", "statistics", "fractions", "decimal", "random", "datetime", "copy",
                     "sys", "typing", "array", "numbers", "hashlib", "json"})

# A program's exception re-raised here as the builtin of that name, for tests that expect one
# (`except ValueError`). Never StopIteration (it would end a test's map() or generator early), SystemExit,
# KeyboardInterrupt or GeneratorExit: anything else is a ProgramError.
EXCEPTIONS = {name: getattr(builtins, name) for name in (
    "ArithmeticError", "AssertionError", "AttributeError", "BufferError", "EOFError", "FloatingPointError",
    "ImportError", "IndexError", "KeyError", "LookupError", "MemoryError", "ModuleNotFoundError", "NameError",
    "NotImplementedError", "OSError", "OverflowError", "RecursionError", "RuntimeError", "TypeError",
    "UnboundLocalError", "UnicodeError", "ValueError", "ZeroDivisionError")}


class ProgramError(Exception):
    """The program raised an exception that has no builtin counterpart here (its own class, SystemExit...)."""


class LinkBroken(BaseException):
    """The program ended, sent something that is not a message, or too much: the run fails."""


class Remote:
    """An object of the program's: it can be called and its attributes read (each a round trip),
    never compared to a value (it equals only itself), iterated or used in arithmetic."""

    __slots__ = ("_link", "_id", "_type")

    def __init__(self, link, ident: int, type_name: str):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", type_name)

    def __call__(self, *args, **kwargs):
        return self._link.request("call", self._id, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in Remote.__slots__:  # protocols (copy, pickle...) are the judge's
            raise AttributeError(name)
        return self._link.request("getattr", self._id, name)

    def __setattr__(self, name, value):
        raise AttributeError("a program's object cannot be changed from the tests")

    def __repr__(self) -> str:
        return f"<program's {self._type[:60]} #{self._id}>"


def literal(x, link) -> str:
    """A value of the tests' as a Python literal for the program side (which evals it with no builtins)."""
    t = type(x)
    if x is None or t is bool or t is str or t is bytes:
        return repr(x)
    if t is int:
        return repr(x) if x.bit_length() <= BIG_INT_BITS else hex(x)
    if t is float:
        return repr(x)  # inf, -inf, nan are names on the program side
    if t is complex:
        return "complex(%r,%r)" % (x.real, x.imag)
    if t is list:
        return "[" + ",".join(literal(v, link) for v in x) + "]"
    if t is tuple:
        return "(" + "".join(literal(v, link) + "," for v in x) + ")"
    if t is dict:
        return "{" + ",".join(literal(k, link) + ":" + literal(v, link) for k, v in x.items()) + "}"
    if t is set or t is frozenset or t is bytearray:
        return "%s([%s])" % (t.__name__, ",".join(literal(v, link) for v in x))
    if t is range:
        return "range(%d,%d,%d)" % (x.start, x.stop, x.step)
    if t is Remote and x._link is link:
        return "H(%d)" % x._id
    for base in (int, float, str, tuple, list, dict, set, frozenset, bytes):  # namedtuple, OrderedDict...
        if isinstance(x, base):
            return literal(base(x), link)
    raise TypeError(f"the tests passed a {t.__name__} to the program: only plain data crosses to it")


class Link:
    """The judge's end of the two pipes to one program."""

    def __init__(self, request_fd: int, reply_fd: int, max_message: int):
        self.out = request_fd
        self.replies = open(reply_fd, "rb", buffering=1 << 16)
        self.max_message = max_message
        self.remotes: dict[int, Remote] = {}
        self.broken = ""

    def receive(self):
        if self.broken:
            raise LinkBroken(self.broken)
        try:
            line = self.replies.readline(self.max_message + 1)
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            self.broken = "the program ended" if not line else f"a message over {self.max_message} bytes"
            raise LinkBroken(self.broken)
        try:
            message = json.loads(line, object_pairs_hook=self._tagged)
            if type(message) is not list or not message or type(message[0]) is not str:
                raise ValueError("not a message")
            return message
        except BaseException as e:  # also RecursionError, MemoryError: nothing half-decoded survives
            self.broken = f"an unreadable message from the program ({type(e).__name__})"
            raise LinkBroken(self.broken) from None

    def _tagged(self, pairs):
        """A JSON object of the wire: one tag (or a handle) -> a fresh plain object of this process."""
        if len(pairs) == 2 and pairs[0][0] == "H" and pairs[1][0] == "t":
            ident, type_name = pairs[0][1], pairs[1][1]
            if type(ident) is not int or type(type_name) is not str:
                raise ValueError("bad handle")
            if ident not in self.remotes:
                self.remotes[ident] = Remote(self, ident, type_name)
            return self.remotes[ident]
        if len(pairs) != 1:
            raise ValueError("bad tag")
        tag, v = pairs[0]
        if tag in ("B", "A", "I"):
            if type(v) is not str:
                raise ValueError("bad " + tag)
            return bytes.fromhex(v) if tag == "B" else bytearray.fromhex(v) if tag == "A" else int(v, 16)
        if type(v) is not list:
            raise ValueError("bad " + tag)
        if tag == "T":
            return tuple(v)
        if tag == "D":
            if not all(type(item) is list and len(item) == 2 for item in v):
                raise ValueError("bad dict")
            return dict(v)
        if tag == "S":
            return set(v)
        if tag == "F":
            return frozenset(v)
        if tag == "G":
            return iter(v)
        if tag == "C" and len(v) == 2 and all(type(p) in (int, float) for p in v):
            return complex(v[0], v[1])
        if tag == "R" and len(v) == 3 and all(type(p) is int for p in v):
            return range(*v)
        raise ValueError("bad tag")

    def request(self, kind: str, ident: int, *rest):
        text = "(%r,%d,%s)\n" % (kind, ident, ",".join(literal(x, self) for x in rest))
        if self.broken:
            raise LinkBroken(self.broken)
        try:
            view = memoryview(text.encode("utf-8", "surrogatepass"))
            while view:
                view = view[os.write(self.out, view):]
        except OSError:
            self.broken = "the program ended"
            raise LinkBroken(self.broken) from None
        reply = self.receive()
        if reply[0] == "ok" and len(reply) == 2:
            return reply[1]
        if reply[0] == "raise" and len(reply) == 3 and type(reply[1]) is str and type(reply[2]) is str:
            name, message = reply[1][:100], reply[2][:1000]
            error = EXCEPTIONS.get(name)
            raise error(message) if error else ProgramError(f"{name}: {message}" if message else name)
        self.broken = "an unexpected message from the program"
        raise LinkBroken(self.broken)


def _program_side():
    """sandbox_program.py, loaded by path: `python -I` leaves this file's folder off sys.path, and the two
    sides share what they can (how an exception is described) without either importing ladder."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_program.py")
    spec = importlib.util.spec_from_file_location("sandbox_program", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROGRAM_SIDE = _program_side()  # loaded once, in the judge server, before any judge is forked


def describe(e: BaseException, source: str) -> str:
    """'tests line N: <that line>' and the exception, N the deepest line of the tests it went through."""
    what, line, text = PROGRAM_SIDE.error_text(e, source, "tests.py")
    return "tests line %d: %s\n%s" % (line, text, what)


def judge(tests: str, link: Link) -> tuple[bool, str, str]:
    """(passed, reason, detail): the program's report, then the tests with its names as handles."""
    try:
        first = link.receive()
    except LinkBroken as e:
        return False, "program failed: " + str(e), ""
    if first[0] == "failed" and len(first) == 5:
        what = first[1][:100] if type(first[1]) is str else "an exception"
        return False, f"program failed: {what}", ""
    if first[0] != "ready" or len(first) != 2 or type(first[1]) is not list:
        return False, "program failed: an unexpected first message", ""
    ns = {"__name__": "__main__", "__builtins__": builtins}
    shadowed = vars(builtins)
    for item in first[1]:
        if type(item) is list and len(item) == 2 and type(item[0]) is str:
            name = item[0]
            # the program's own `len` or `AssertionError` is its business: the tests keep the real ones,
            # and a name such as `math` is always the real module (never a program's object posing as one)
            if name in MODULES:
                try:
                    ns[name] = __import__(name)
                except ImportError:
                    pass
            elif name.isidentifier() and not name.startswith("__") and name not in shadowed:
                ns[name] = item[1]
    try:
        exec(compile(tests, "tests.py", "exec", dont_inherit=True), ns)
    except LinkBroken as e:
        return False, "program failed: " + str(e), describe(e, tests)
    except BaseException as e:
        return False, f"tests failed: {type(e).__name__}", describe(e, tests)
    return True, "passed", ""


def run_job(header: bytes, fds: list[int]) -> None:
    """In the forked judge: limits on itself, then judge, then the verdict as one JSON line."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request_fd, reply_fd, verdict_fd, tests_fd = fds
    job = json.loads(header)
    # SIGALRM's default action ends this process at the deadline, whatever the tests are doing.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, job["timeout"] + 1)
    cpu = int(job["timeout"]) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (job["memory"], job["memory"]))
    chunks = []
    while True:
        chunk = os.read(tests_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(tests_fd)
    tests = b"".join(chunks).decode("utf-8", "surrogatepass")
    try:
        ok, reason, detail = judge(tests, Link(request_fd, reply_fd, job["max_message"]))
    except BaseException as e:  # a bug of the judge's own: still a verdict, never a pass
        ok, reason, detail = False, f"judge error: {type(e).__name__}", ""
    verdict = memoryview((json.dumps({"ok": ok, "reason": reason, "detail": detail}) + "\n").encode())
    while verdict:
        verdict = verdict[os.write(verdict_fd, verdict):]


def serve(sock: socket.socket) -> None:
    """Fork a judge per job until the parent hangs up."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # judges are reaped by the kernel
    while True:
        try:
            header, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        except InterruptedError:
            continue
        except OSError:
            return
        if not header:
            return
        try:
            pid = os.fork() if len(fds) == 4 else -1
        except OSError:
            pid = -1  # no judge: the parent sees the verdict pipe close without a verdict (a failure)
        if pid == 0:
            try:
                sock.close()
                run_job(header, fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def not_dumpable() -> None:
    """No process of the same uid (the program, in LADDER_SANDBOX=unsafe) can ptrace the judges."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0, inherited by the forks
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    sys.path.extend(json.loads(sys.argv[2]))  # site-packages, for tests that import an installed module
    not_dumpable()
    serve(socket.socket(fileno=int(sys.argv[1])))
