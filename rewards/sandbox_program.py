"""The program side of the sandbox: runs model-written code in its jail and answers the judge's calls.

ladder.rewards.sandbox starts it as `python -I -S -B -c BOOT CODE_FD JOB_FD REQUEST_FD REPLY_FD`, BOOT
running this file's code object (compiled once by the parent, marshalled into the CODE_FD memfd, so no run
compiles it again), inside bubblewrap; or as root it builds the jail itself (`isolate`). It imports only
os, sys and resource (ctypes too for the hand-made jail), nothing of the trainer's environment.

Nothing here is trusted. The program runs in this interpreter and may rewrite any of it, write anything
to the reply pipe, or exit at any moment; the verdict is the judge's (sandbox_judge.py), which runs the
tests in another process and only ever receives plain data from this one. This side's job is to be
useful to honest programs: run the program, then answer each call the judge sends (a top-level function
with plain-data arguments) with the result as plain data.

The wire, one message per line:
- judge -> program: a Python literal tuple, ("call", id, args, kwargs) or ("getattr", id, name), made by
  the judge from the tests' own values; evaluated here with no builtins. H(id) is an object of this side.
- program -> judge: JSON. null, true, false, numbers (NaN, Infinity), strings and lists as themselves;
  every other value is a JSON object of one tag: {"T": [..]} tuple, {"D": [[k, v], ..]} dict, {"S": [..]}
  set, {"F": [..]} frozenset, {"B": hex} bytes, {"A": hex} bytearray, {"C": [re, im]} complex,
  {"I": hex} a huge int, {"R": [start, stop, step]} range, {"G": [..]} an iterator's items, and
  {"H": id, "t": type name} any other object (the judge can call it or read its attributes, never compare
  it to a value: it equals only itself).
  Messages: ["ready", [[name, value], ..]] once the program ran, ["failed", type, message, line, text] if
  it raised, then per call ["ok", value] or ["raise", type, message].
"""

import os
import resource
import sys

BIG_INT_BITS = 10_000  # larger ints cross as hex: int <-> decimal str is capped at 4300 digits (3.11+)
MAX_ITEMS = 1_000_000  # an iterator returned is consumed up to this many items
FLOATS = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}
ESCAPES = {i: "\\u%04x" % i for i in [*range(32), 34, 92, *range(0xD800, 0xE000)]}  # JSON-safe, valid UTF-8


class Encoder:
    """Values as the wire's JSON. Exact types first: a subclass crosses as its plain base value (a
    namedtuple as a tuple, an IntEnum as an int), so whatever its own __eq__ says never reaches the judge."""

    def __init__(self):
        self.objects = []  # id -> object, for the judge's handles (kept alive: ids stay valid)
        self.ids = {}

    def handle(self, x) -> int:
        key = id(x)
        if key not in self.ids:
            self.ids[key] = len(self.objects)
            self.objects.append(x)
        return self.ids[key]

    def dump(self, x) -> str:
        t = type(x)
        if x is None:
            return "null"
        if t is bool:
            return "true" if x else "false"
        if t is int:
            return int.__repr__(x) if x.bit_length() <= BIG_INT_BITS else '{"I":"%s"}' % hex(x)
        if t is float:
            r = float.__repr__(x)
            return FLOATS.get(r, r)
        if t is str:
            return '"' + x.translate(ESCAPES) + '"'
        dump = self.dump
        if t is list:
            return "[" + ",".join(map(dump, x)) + "]"
        if t is tuple:
            return '{"T":[' + ",".join(map(dump, x)) + "]}"
        if t is dict:
            return '{"D":[' + ",".join("[%s,%s]" % (dump(k), dump(v)) for k, v in x.items()) + "]}"
        if t is set or t is frozenset:
            return '{"%s":[' % ("S" if t is set else "F") + ",".join(map(dump, x)) + "]}"
        if t is bytes or t is bytearray:
            return '{"%s":"%s"}' % ("B" if t is bytes else "A", x.hex())
        if t is complex:
            return '{"C":[%s,%s]}' % (dump(x.real), dump(x.imag))
        if t is range:
            return '{"R":[%s,%s,%s]}' % (dump(x.start), dump(x.stop), dump(x.step))
        for base in (int, float, str, tuple, list, dict, set, frozenset, bytes):
            if isinstance(x, base):
                plain = {int: int.__int__, float: float.__float__, str: str.__str__}.get(base, base)(x)
                if type(plain) is base:
                    return dump(plain)
        if t.__module__ == "numpy" and getattr(x, "shape", None) == () and hasattr(x, "item"):
            plain = x.item()  # a numpy scalar (np.int64(3)): its Python value
            if type(plain) is not t:
                return dump(plain)
        if hasattr(t, "__next__") and hasattr(t, "__iter__"):  # a generator, map, zip...: its items
            items = []
            for item in x:
                items.append(item)
                if len(items) > MAX_ITEMS:
                    raise ValueError(f"an iterator of more than {MAX_ITEMS} items")
            return '{"G":[' + ",".join(map(dump, items)) + "]}"
        return '{"H":%d,"t":%s}' % (self.handle(x), dump(t.__name__))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def error_text(e: BaseException, source: str, filename: str) -> tuple[str, int, str]:
    """(a one-line description, line, that line's text) of an exception raised by `source`."""
    line, tb = 0, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    if line == 0 and isinstance(e, SyntaxError):
        line = e.lineno or 0
    lines = source.splitlines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    try:
        detail = str(e)[:500]
    except BaseException:
        detail = ""
    return type(e).__name__ + (": " + detail if detail else ""), line, text


def serve(program: str, request_fd: int, reply_fd: int) -> None:
    """Run the program, report its names, answer calls until the judge hangs up; never returns."""
    import builtins

    encoder = Encoder()
    dump = encoder.dump

    def reply(message: str) -> None:
        write_all(reply_fd, (message + "\n").encode("utf-8"))

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass

    ns = {"__name__": "solution", "__builtins__": builtins}
    try:
        exec(compile(program, "solution.py", "exec", dont_inherit=True), ns)
    except BaseException as e:
        what, line, text = error_text(e, program, "solution.py")
        flush()
        write_all(2, ("program line %d: %s\n%s\n" % (line, text, what)).encode("utf-8", "replace"))
        try:
            reply('["failed",%s,%s,%d,%s]' % (dump(type(e).__name__), dump(what), line, dump(text)))
        finally:
            os._exit(1)
    names = []
    for name, value in list(ns.items()):
        if type(name) is not str or name.startswith("__"):
            continue
        try:
            t = type(value)
            # Functions, classes, iterators and big tables cross as handles; small constants by value.
            text = None if hasattr(t, "__next__") or (hasattr(t, "__len__") and len(value) > 4096) else dump(value)
            if text is None or len(text) > 65536:
                text = '{"H":%d,"t":%s}' % (encoder.handle(value), dump(t.__name__))
            names.append("[%s,%s]" % (dump(name), text))
        except BaseException:
            pass  # a value that cannot be described is left out: the tests see no such name
    reply('["ready",[' + ",".join(names) + "]]")

    env = {"__builtins__": {}, "H": encoder.objects.__getitem__, "inf": float("inf"), "nan": float("nan"),
           "complex": complex, "set": set, "frozenset": frozenset, "range": range, "bytearray": bytearray}
    requests = open(request_fd, "rb", buffering=1 << 16)
    while True:
        line = requests.readline()
        if not line:  # the judge is done
            flush()
            os._exit(0)
        try:
            request = eval(line.decode("utf-8"), env)
            target = encoder.objects[request[1]]
            value = target(*request[2], **request[3]) if request[0] == "call" else getattr(target, request[2])
            message = '["ok",' + dump(value) + "]"
        except BaseException as e:
            try:
                detail = str(e)[:1000]
            except BaseException:
                detail = ""
            message = '["raise",%s,%s]' % (dump(type(e).__name__), dump(detail))
        reply(message)


def isolate(job: dict):
    """Root without bubblewrap: new namespaces and a root of our own, the same one bubblewrap is given
    (read-only binds of /usr, Python's install, a few /etc files and devices, a fresh size-capped /tmp);
    the host's file system is detached. Returns libc, in the jailed process (PID 2 of a new PID namespace)."""
    import ctypes

    os.umask(0o022)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def check(result, what):
        if result != 0:
            raise OSError(ctypes.get_errno(), what)

    libc.prctl(1, 9, 0, 0, 0)  # PDEATHSIG=SIGKILL: this process dies with the trainer, and the jail with it

    def mount(src, dst, fstype, flags, data=None):
        check(libc.mount(src and src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                         data and data.encode()), "mount " + dst)

    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
    NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWPID, NEWNET = 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x20000000, 0x40000000
    spaces = NEWNS | NEWUTS | NEWIPC | NEWPID | NEWNET
    if libc.unshare(spaces | NEWCGROUP) != 0:
        check(libc.unshare(spaces), "unshare")
    mount(None, "/", None, REC | PRIVATE)
    layout, new = job["root"], job["root"]["mountpoint"]
    mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")

    def bind(src, flags):
        dst = new + src
        os.makedirs(dst if os.path.isdir(src) else os.path.dirname(dst), 0o755, exist_ok=True)
        if not os.path.isdir(src):
            open(dst, "w").close()
        mount(src, dst, None, BIND)
        mount(None, dst, None, REMOUNT | BIND | flags)

    for path in layout["dirs"] + layout["files"]:
        bind(path, RDONLY | NOSUID | NODEV)
    for target, path in layout["links"]:
        os.symlink(target, new + path)
    os.makedirs(new + "/dev", 0o755)
    mount("tmpfs", new + "/dev", "tmpfs", NOSUID | NOEXEC, "size=64k,mode=0755")
    for path in layout["devices"]:
        bind(path, NOSUID | NOEXEC)
    os.makedirs(new + "/tmp", 0o755)
    mount("tmpfs", new + "/tmp", "tmpfs", NOSUID | NODEV, "size=%d,mode=1777" % layout["disk"])
    mount(None, new, None, REMOUNT | RDONLY | NOSUID | NODEV)
    os.chdir(new)
    pivot_root = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "ppc64le": 203,
                  "ppc64": 203, "s390x": 217, "i686": 217, "armv7l": 218}.get(os.uname().machine)
    if pivot_root is not None and libc.syscall(pivot_root, b".", b".") == 0:
        check(libc.umount2(b".", 2), "detach the host root")  # MNT_DETACH: the host's tree is gone
    else:
        os.chroot(".")  # no way out of it without CAP_SYS_CHROOT, which the program never has
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
    return libc


def main(argv: list[str]) -> None:
    job_fd, request_fd, reply_fd = (int(a) for a in argv[-3:])
    job = eval(read_all(job_fd).decode("utf-8", "surrogatepass"), {"__builtins__": {}})  # the parent's literal
    libc = isolate(job) if job["isolate"] else None
    if job["uid"] is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(job["uid"])
        os.setuid(job["uid"])
    if libc is not None:  # bubblewrap does these itself
        libc.prctl(1, 9, 0, 0, 0)  # PDEATHSIG=SIGKILL again: setuid cleared it
        libc.prctl(38, 1, 0, 0, 0)  # no_new_privs: setuid binaries give nothing
    for name, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    sys.path.extend(job["site"])
    program = job["program"]
    job = None
    serve(program, request_fd, reply_fd)


if __name__ == "__main__":
    main(sys.argv)
