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
            "cell": f"the {self.cell_seconds:g} s time limit per cell",
            "call": f"the {self.call_seconds:g} s time limit per function call",
            "submission": f"the {self.submission_seconds:g} s time limit per notebook",
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
    probe = subprocess.run(_bwrap_prefix(Path(tempfile.gettempdir()), Limits()) + ["/bin/true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return False, ("bubblewrap cannot create namespaces here (" + probe.stderr.strip()[:200] +
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
             "--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.disk_mb << 20), "--perms", "01777", "--tmpfs", "/tmp",
             "--bind", str(scratch), "/scratch", "--chdir", "/scratch"]
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


class Worker:
    """One worker process; restartable, since student code may kill it."""

    def __init__(self, limits: Limits, sandboxed: bool, scratch: Path):
        self.limits = limits
        self.sandboxed = sandboxed
        self.scratch = scratch
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.stop()
        # A fresh, empty scratch folder: a restarted worker runs as a new uid, which
        # could not use files its predecessor left (and the replay recreates them).
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        if self.sandboxed:
            os.chmod(self.scratch, 0o1777)
            cmd = _bwrap_prefix(self.scratch, self.limits, _next_uid()) + [
                sys.executable, "-I", "/opt/grader/worker.py"]
            env = {}
        else:
            cmd = [sys.executable, "-I", str(WORKER_FILE)]
            env = _worker_env(str(self.scratch), tmp=str(self.scratch / ".matplotlib"))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=self.scratch, env=env,
                                     preexec_fn=_set_limits(self.limits), close_fds=True)

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

    # ---------------------------------------------------------- protocol

    def request(self, header: dict, blobs=(), timeout: float = 10.0, limit: str = "call"):
        if self.proc is None:
            self.start()
        try:
            wire.send_message(self.proc.stdin.fileno(), header, list(blobs))
        except (BrokenPipeError, OSError):
            raise self._died()
        deadline = time.monotonic() + timeout
        try:
            reply = self._read_message(deadline)
        except Timeout:
            self.stop()
            raise Timeout(f"stopped by {self.limits.describe(limit)}")
        except (EOFError, ValueError, struct.error, UnicodeDecodeError):
            raise self._died()
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
        return WorkerDied("the worker sent a malformed reply")

    def _read_exact(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("timeout")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise Timeout("timeout")
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float) -> bytes:
        (n,) = struct.unpack(">Q", self._read_exact(8, deadline))
        if n > wire.MAX_FRAME:
            raise ValueError("frame too large")
        return self._read_exact(n, deadline)

    def _read_message(self, deadline: float):
        import json
        header = json.loads(self._read_frame(deadline).decode())
        if not isinstance(header, dict) or not isinstance(header.get("blobs"), int) or header["blobs"] > 64:
            raise ValueError("malformed header")
        blobs = [self._read_frame(deadline) for _ in range(header["blobs"])]
        return header, blobs
