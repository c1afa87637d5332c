"""Start the worker in a sandbox and talk to it, with limits on everything.

On Linux with bubblewrap (`bwrap`) the worker gets its own network, PID, IPC
and mount namespaces; it sees only the system libraries, the Python install and
a small, size-limited scratch folder; it runs as the unprivileged user `nobody`
(when the grader is root) with no capabilities. Resource limits (memory, CPU
time, processes, file size, open files) apply in every mode. Without bubblewrap
the worker still runs in a separate process with those limits, and the grader
says loudly what protection is missing.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import worker as wire

WORKER_FILE = Path(wire.__file__).resolve()


@dataclasses.dataclass
class Limits:
    cell_seconds: float = 10.0        # one notebook cell
    call_seconds: float = 5.0         # one call of a student function
    submission_seconds: float = 60.0  # everything for one notebook
    memory_mb: int = 4096             # address space of the worker
    processes: int = 64               # tasks the worker's user may own
    output_mb: int = 8                # printed output, and any one file written
    disk_mb: int = 64                 # the scratch folder (sandboxed mode)
    open_files: int = 256

    def describe(self, which: str) -> str:
        return {
            "cell": f"the {self.cell_seconds:g} s CPU-time limit per cell",
            "call": f"the {self.call_seconds:g} s CPU-time limit per function call",
            "submission": f"the {self.submission_seconds:g} s CPU-time limit per notebook",
            "memory": f"the {self.memory_mb} MB memory limit",
        }[which]


class WorkerDied(Exception):
    """The worker stopped answering: crashed, exited, or ran past a limit."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class Timeout(WorkerDied):
    pass


def isolation_status() -> tuple[bool, str]:
    """(available, explanation) for the kernel-level sandbox."""
    if not sys.platform.startswith("linux"):
        return False, f"no kernel sandbox on {sys.platform}: student code can read files and use the network"
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False, ("bubblewrap (bwrap) is not installed: student code can read files the grader can "
                       "read and use the network (apt-get install bubblewrap)")
    ok, detail = probe_worker(sandboxed=True)
    if not ok:
        return False, ("bubblewrap cannot start the grader's worker here (" + detail[:300] +
                       "): student code can read files the grader can read and use the network")
    return True, "bubblewrap sandbox: no network, private filesystem, unprivileged user"


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if str(p) != "/"]


_uids = itertools.count()


def _next_uid() -> int:
    """A fresh unprivileged uid per worker: the process limit counts per uid, so a fork
    bomb in one submission cannot starve the workers grading others beside it."""
    return 100000 + next(_uids) % 60000


def _worker_env(scratch: str, tmp: str) -> dict[str, str]:
    """The worker's whole environment, in or out of the sandbox: the grader's own variables
    never reach student code. Triton kernels always run in its interpreter, on the CPU."""
    return {"HOME": scratch, "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp,
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TRITON_INTERPRET": "1",
            "TRITON_CACHE_DIR": f"{scratch}/.triton", "WORKER_OUTPUT": f"{scratch}/.output"}


def _bwrap_prefix(scratch: Path, limits: Limits, uid: int = 65534) -> list[str]:
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            # Mounts apply in order: the tmpfs on /tmp comes first, or it would hide a Python
            # or venv that lives under /tmp (a course cloned there).
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.disk_mb << 20), "--perms", "01777", "--tmpfs", "/tmp",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/lib", "/lib64", "/bin", "/sbin", "/lib32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    # The Python install and the virtual environment, read-only; nothing else of the
    # grader's filesystem (no repository, no solutions, no gradebook, no other students).
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    made = set()
    for root in sorted(roots):
        for parent in _ancestors(root):
            if parent not in made and not str(parent).startswith("/usr"):
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += ["--ro-bind", str(root), str(root)]
    args += ["--perms", "0755", "--dir", "/opt/grader",
             "--ro-bind", str(WORKER_FILE), "/opt/grader/worker.py",
             # The student's working folder: a size-limited tmpfs, like /tmp (a bind of a host
             # folder would let a submission fill the grader's disk).
             "--size", str(limits.disk_mb << 20), "--perms", "01777", "--tmpfs", "/scratch",
             "--chdir", "/scratch"]
    for name, value in _worker_env("/scratch", tmp="/tmp").items():
        args += ["--setenv", name, value]
    if os.geteuid() == 0:
        # Drop to a real unprivileged user, so process limits count only the sandbox.
        args += ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    else:
        args[1:1] = ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return args


def _set_limits(limits: Limits):
    import resource

    def apply():
        os.setsid()
        cpu = int(limits.submission_seconds) + 5
        for name, value in (("RLIMIT_AS", limits.memory_mb << 20),
                            ("RLIMIT_CPU", cpu),
                            ("RLIMIT_FSIZE", limits.output_mb << 20),
                            ("RLIMIT_NOFILE", limits.open_files),
                            ("RLIMIT_CORE", 0)):
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
            except (ValueError, OSError):
                pass
        # Root ignores RLIMIT_NPROC; the sandbox's unprivileged user inherits it.
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        except (ValueError, OSError):
            pass
    return apply


# Time limits count the CPU time of the worker and its children, so a loaded machine never
# turns a correct submission into a timeout; a call may wait this many times its CPU limit on
# the wall clock (sleeping, blocking) before it is stopped all the same.
WALL_FACTOR = 4.0
MAX_HEADER = 2 << 20    # bytes of one reply header (JSON): values travel as blobs
MAX_REPLY = 512 << 20   # bytes of one whole reply, read only after this check


def _proc_cpu(pid: int) -> float:
    """CPU seconds of `pid`, including its reaped children; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(x) for x in fields[11:15]) / _CLOCK_TICKS


def _children(pid: int) -> list[int]:
    kids = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pass
    return kids


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError, AttributeError):
    _CLOCK_TICKS = 100


class Worker:
    """One worker process; restartable, since student code may kill it."""

    def __init__(self, limits: Limits, sandboxed: bool, scratch: Path):
        self.limits = limits
        self.sandboxed = sandboxed
        self.scratch = scratch
        self.proc: subprocess.Popen | None = None
        self.last_cpu = 0.0   # CPU seconds the last request used

    def start(self) -> None:
        self.stop()
        # A fresh, empty scratch folder (used as the worker's folder only without bubblewrap,
        # which gives the worker a tmpfs of its own).
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        if self.sandboxed:
            cmd = _bwrap_prefix(self.scratch, self.limits, _next_uid()) + [
                sys.executable, "-I", "/opt/grader/worker.py"]
            env = {}
        else:
            cmd = [sys.executable, "-I", str(WORKER_FILE)]
            env = _worker_env(str(self.scratch), tmp=str(self.scratch / ".matplotlib"))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=self.scratch, env=env,
                                     preexec_fn=_set_limits(self.limits), close_fds=True)
        # Writes never block: a submission that stops reading its requests cannot hang us.
        os.set_blocking(self.proc.stdin.fileno(), False)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc.wait()
        self.proc = None

    def cpu_seconds(self) -> float:
        """CPU time of the worker's whole process tree (bubblewrap, the worker, its children)."""
        if self.proc is None:
            return 0.0
        total, todo, seen = 0.0, [self.proc.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += _proc_cpu(pid)
            todo += _children(pid)
        return total

    # ---------------------------------------------------------- protocol

    def request(self, header: dict, blobs=(), timeout: float = 10.0, limit: str = "call",
                wall: float | None = None):
        """Send a request and read its reply. `timeout` is CPU seconds; `wall` (default
        WALL_FACTOR times as long) bounds the waiting, writing included."""
        if self.proc is None:
            self.start()
        token = secrets.token_hex(8)
        wall = timeout * WALL_FACTOR + 1.0 if wall is None else wall
        deadline = time.monotonic() + wall
        cpu0 = self.cpu_seconds()
        budget = (cpu0 + timeout, limit)
        try:
            self._write(wire.frames(dict(header, id=token), list(blobs)), deadline, budget)
            reply = self._read_message(deadline, budget)
        except Timeout as err:
            self.stop()
            raise Timeout(f"stopped by {self.limits.describe(limit)}{err.reason}")
        except (EOFError, BrokenPipeError, ConnectionError, ValueError, struct.error,
                UnicodeDecodeError, OSError):
            raise self._died()
        finally:
            self.last_cpu = max(0.0, self.cpu_seconds() - cpu0) if self.proc else timeout
        if reply[0].get("id") != token:
            self.stop()
            raise WorkerDied("the worker's reply did not answer the grader's request: "
                             "a submission may not write to the grader's pipe")
        return reply

    def _died(self) -> WorkerDied:
        code = self.proc.poll() if self.proc else None
        if code is None and self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        self.stop()
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            if sig == signal.SIGXCPU:
                return WorkerDied(f"stopped by {self.limits.describe('submission')} (CPU time)")
            if sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT):
                return WorkerDied(f"the worker was killed by {name}: most likely {self.limits.describe('memory')}")
            return WorkerDied(f"the worker was killed by {name}")
        if code is not None:
            return WorkerDied(f"the code exited the process (exit status {code}): sys.exit, os._exit "
                              "and patching Python's own internals are not allowed in a submission")
        return WorkerDied("the worker sent a malformed or oversized reply")

    def _wait(self, fd: int, write: bool, deadline: float, budget) -> None:
        """Until `fd` is ready; Timeout past the wall deadline or the CPU budget."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(" (wall clock: the code waited instead of computing)")
            ready = select.select([], [fd], [], min(left, 0.25))[1] if write else \
                select.select([fd], [], [], min(left, 0.25))[0]
            if ready:
                return
            if self.cpu_seconds() > budget[0]:
                raise Timeout("")

    def _write(self, data: bytes, deadline: float, budget) -> None:
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            self._wait(fd, True, deadline, budget)
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                continue
            view = view[n:]

    def _read_exact(self, n: int, deadline: float, budget) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks = []
        while n:
            self._wait(fd, False, deadline, budget)
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_message(self, deadline: float, budget):
        import json
        (n,) = struct.unpack(">Q", self._read_exact(8, deadline, budget))
        if n > MAX_HEADER:  # checked before reading: a header bomb costs us nothing
            raise ValueError("reply header too large")
        header = json.loads(self._read_exact(n, deadline, budget).decode())
        if not isinstance(header, dict) or not isinstance(header.get("blobs"), int) or \
                not 0 <= header["blobs"] <= 64:
            raise ValueError("malformed header")
        total, blobs = n, []
        for _ in range(header["blobs"]):
            (size,) = struct.unpack(">Q", self._read_exact(8, deadline, budget))
            total += size
            if size > wire.MAX_FRAME or total > MAX_REPLY:
                raise ValueError("reply too large")
            blobs.append(self._read_exact(size, deadline, budget))
        return header, blobs


def probe_worker(sandboxed: bool, imports: tuple[str, ...] = ("numpy",)) -> tuple[bool, str]:
    """Start the real worker, as grading will, import what chapters need and call a function.
    (ok, what failed): a sandbox that starts `/bin/true` may still hide the worker's Python."""
    scratch = Path(tempfile.mkdtemp(prefix="grader-probe-"))
    worker = Worker(Limits(), sandboxed, scratch)
    source = "".join(f"import {m}\n" for m in imports) + "def _probe(x):\n    return x + 1\n"
    try:
        reply, _ = worker.request({"op": "run_cell", "index": 0, "source": source}, timeout=60)
        if not reply.get("ok"):
            return False, f"the worker could not import {', '.join(imports)}: {reply.get('error')}"
        reply, _ = worker.request({"op": "call", "fn": "_probe", "args": {"tuple": [{"int": "41"}]},
                                   "kwargs": {}}, timeout=10)
        if reply.get("result") != {"int": "42"}:
            return False, f"the worker could not call a function: {reply.get('error', reply)}"
        return True, "ok"
    except WorkerDied as err:
        return False, f"the worker did not start: {err.reason}"
    except OSError as err:
        return False, f"the worker did not start: {err}"
    finally:
        worker.stop()
        shutil.rmtree(scratch, ignore_errors=True)
