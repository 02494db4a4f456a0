"""Real server and agent processes forked from one interpreter that has imported them already.

`python -m uptend server run` spends most of its start-up importing (FastAPI, SQLAlchemy,
Alembic, uvicorn, TUF: ~2 CPU-seconds), an agent less but still most of its start-up; a
suite starts some hundreds of them on two shared cores. A `Zygote` is a helper process of
this test process that imports them once and forks a child per start: the child is a real
process of its own (its own pid, memory, signals and exit status), gets the caller's
stdin/stdout/stderr, argv, environment and working directory, and runs the module as
`python -m MODULE` would (`runpy`, as `__main__`), so what it runs is the real entry point.

What differs from a fresh interpreter, and why the tests that use this do not care: the
modules were imported before the fork (nothing of ours reads the environment at import),
the child's parent is the zygote (a test waits for it through `ZygoteProc`, which the
zygote tells of each exit), and `/proc/PID/cmdline` names the zygote. Tests about the
process itself (start-up, the port in use, TLS, the CLI's exec into the agent) start
their own with subprocess. `UPTEND_TEST_ZYGOTE=0` turns it off: plain subprocesses.
"""

import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# What the processes the fleet starts import; forked children find them imported.
PRELOAD = (
    "uptend.cli",
    "uptend.cli.server",
    "uptend.server.app",
    "uptend.server.services.setup",
    "uptend.server.storage.db",
    "uvicorn",
    "uvicorn.main",
    "uptend.agent.resident",
    "uptend.agent.runner",
)
_MAX_MESSAGE = 1 << 20
TREE = Path(__file__).resolve().parents[2]


def enabled() -> bool:
    return os.environ.get("UPTEND_TEST_ZYGOTE", "1") != "0"


# -- the zygote process ---------------------------------------------------------------------


def serve(fd: int) -> None:
    """The zygote's loop: fork a child per request, report each child's exit."""
    for name in PRELOAD:
        importlib.import_module(name)
    assert threading.active_count() == 1, "a preloaded module started a thread: fork is unsafe"
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if sock.fileno() in ready:
            msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 3)
            if not msg:
                return  # the test process is gone or done: children live on, as Popen's do
            request = json.loads(msg)
            pid = os.fork()
            if pid == 0:
                _child(request, fds, sock, [wake_r, wake_w])
            for f in fds:
                os.close(f)
            sock.send(json.dumps({"id": request["id"], "pid": pid}).encode())
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            sock.send(json.dumps({"exited": pid, "code": code}).encode())


def _child(request: dict[str, Any], fds: list[int], sock: socket.socket, close: list[int]) -> None:
    """In the forked child: `python -m MODULE ARGS` with the caller's stdio; never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for f in close:
            os.close(f)
        for target, f in zip((0, 1, 2), fds, strict=True):
            os.dup2(f, target)
        for f in fds:
            if f > 2:
                os.close(f)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m", *request["args"]]  # runpy puts the module's path first, as -m does
        code = 0
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                sys.stderr.write(f"{e.code}\n")
        except BaseException:  # noqa: BLE001 - what an interpreter dies of: traceback, exit 1
            traceback.print_exc()
            code = 1
        # what the interpreter does at exit: wait for non-daemon threads, run atexit
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


# -- the test process's side ----------------------------------------------------------------


class ZygoteProc(subprocess.Popen[bytes]):
    """A child of the zygote, seen as a Popen: pid, poll, wait, send_signal, kill, stdout."""

    def __init__(self, zygote: "Zygote", pid: int, args: list[str], stdout: IO[bytes] | None):
        # Popen's own __init__ would start a process: set what its other methods read
        self._zygote = zygote
        self.args = args
        self.pid = pid
        self.stdin = None
        self.stdout = stdout
        self.stderr = None
        self.returncode: int | None = None
        self._child_created = False  # Popen.__del__ and __exit__ then leave it alone
        self.universal_newlines = False
        self.text_mode = False

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._zygote.wait_exit(self.pid, timeout)
            if code is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self.returncode = code
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __del__(self) -> None:
        pass


class Zygote:
    """The zygote of this test process, started on first use, gone when the process exits."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        serve_it = f"from tests.support.zygote import serve; serve({theirs.fileno()})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", serve_it],  # from TREE: `tests` imports as here
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd=TREE,
        )
        theirs.close()
        self.sock = ours
        self._lock = threading.Lock()  # one request at a time on the socket
        self._cond = threading.Condition()
        self._started: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._closed = False
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(_MAX_MESSAGE)
            except OSError:
                msg = b""
            with self._cond:
                if not msg:
                    self._closed = True
                    self._cond.notify_all()
                    return
                data = json.loads(msg)
                if "exited" in data:
                    self._exits[data["exited"]] = data["code"]
                else:
                    self._started[data["id"]] = data["pid"]
                self._cond.notify_all()

    def spawn(
        self,
        module: str,
        args: Sequence[str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        env: Mapping[str, str],
        cwd: str | None = None,
        stdout_file: IO[bytes] | None = None,
    ) -> ZygoteProc:
        """`python -m MODULE ARGS` with these fds as its stdin, stdout and stderr."""
        with self._lock:
            self._next += 1
            ident = self._next
            request = {
                "id": ident,
                "module": module,
                "args": list(args),
                "env": dict(env),
                "cwd": cwd or str(Path.cwd()),
            }
            socket.send_fds(self.sock, [json.dumps(request).encode()], [stdin, stdout, stderr])
            with self._cond:
                ok = self._cond.wait_for(lambda: ident in self._started or self._closed, 60)
                if not ok or self._closed:
                    raise RuntimeError(f"the test zygote did not start {module}")
                pid = self._started.pop(ident)
        argv = [sys.executable, "-m", module, *args]
        return ZygoteProc(self, pid, argv, stdout_file)

    def exit_code(self, pid: int) -> int | None:
        with self._cond:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._exits:
                if self._closed:
                    raise RuntimeError("the test zygote died: its children cannot be waited for")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._exits[pid]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def zygote() -> Zygote:
    """This process's zygote (started now if it is not running)."""
    global _zygote  # noqa: PLW0603 - one per process, started on first use
    with _zygote_lock:
        if _zygote is None or _zygote._closed:
            _zygote = Zygote()
            atexit.register(_zygote.close)
        return _zygote


def popen(
    module: str,
    args: Sequence[str],
    *,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`subprocess.Popen([python, -m, MODULE, *ARGS], stdin=DEVNULL, ...)`, forked by the zygote.

    `stdout`/`stderr`: an open file or subprocess.PIPE (stdout only: the Popen's `stdout`
    is then the pipe's read end, as Popen's is).
    """
    env = dict(os.environ if env is None else env)
    if not enabled():
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
    read_end: IO[bytes] | None = None
    close: list[int] = []
    if stdout == subprocess.PIPE:
        r, w = os.pipe()
        read_end = os.fdopen(r, "rb")
        out_fd = w
        close.append(w)
    else:
        assert not isinstance(stdout, int)
        out_fd = stdout.fileno()
    assert not isinstance(stderr, int)
    devnull = os.open(os.devnull, os.O_RDONLY)
    close.append(devnull)
    try:
        return zygote().spawn(
            module,
            args,
            stdin=devnull,
            stdout=out_fd,
            stderr=stderr.fileno(),
            env=env,
            stdout_file=read_end,
        )
    except BaseException:
        if read_end is not None:
            read_end.close()
        raise
    finally:
        for f in close:
            os.close(f)


__all__ = ["ZygoteProc", "enabled", "popen", "serve", "zygote"]
