"""The fake fleet: a real `uptend server` process and real agent processes on 127.0.0.1.

`Fleet` initialises a server data dir as `uptend server init` does (in this process), starts
`uptend server run --port 0` and reads the port from its first stdout line,
so nothing sleeps waiting for it. `Fleet.publish` goes through the real CLI. Each `Host`
has its own data dir and runs `uptend agent run` as a real process.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from uptend.server.services.setup import init_data_dir
from uptend.server.settings import Settings

UPTEND = [sys.executable, "-m", "uptend"]

APP_TEMPLATE = """
import http.server, json, os, signal, sys, threading, time
from pathlib import Path

VERSION = {version!r}
MODE = {mode!r}
PORT = {port!r}
print(f"app {{VERSION}} starting in mode {{MODE}}", flush=True)
if MODE == "crash":
    print("fatal: this build cannot start", flush=True)
    sys.exit(3)
if MODE == "late-crash":  # healthy through a short probation, then it dies (every run)
    threading.Timer(2.0, lambda: os._exit(4)).start()
state = Path(os.environ["UPTEND_STATE_DIR"])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
if PORT:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(500 if MODE == "unhealthy" else 200)
            self.end_headers()
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", PORT), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
while not stop.is_set():
    tmp = state / ".running.json.tmp"
    env = {{k: v for k, v in os.environ.items() if k.startswith("UPTEND_")}}
    record = {{"version": VERSION, "pid": os.getpid(), "env": env, "cwd": os.getcwd()}}
    tmp.write_text(json.dumps(record))
    tmp.replace(state / "running.json")
    stop.wait(0.2)
"""


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until it holds (an event we can only observe by looking)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(0.05)


def make_release(
    where: Path,
    version: str,
    *,
    mode: str = "ok",
    probation: float = 0.5,
    port: int | None = None,
    health_http: bool = False,
    manifest: str | None = None,
) -> Path:
    src = where / f"src-{version}-{mode}-{time.monotonic_ns()}"
    src.mkdir(parents=True)
    (src / "app.py").write_text(APP_TEMPLATE.format(version=version, mode=mode, port=port))
    if manifest is None:
        manifest = (
            f'[app]\ncommand = ["{sys.executable}", "app.py"]\n\n'
            f"[health]\nprobation = {probation}\n"
        )
        if health_http:
            manifest += f'http = "http://127.0.0.1:{port}/health"\ntimeout = 2\n'
    (src / "uptend.toml").write_text(manifest)
    return src


class Host:
    def __init__(self, fleet: "Fleet", name: str) -> None:
        self.fleet = fleet
        self.name = name
        self.dir = fleet.root / name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = fleet.root / f"{name}.log"

    def start(
        self, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*UPTEND, "agent", "run", str(self.dir), *(args or [])],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        out.close()
        return self.proc

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def current(self, app: str) -> str | None:
        link = self.dir / "apps" / app / "current"
        return link.readlink().name if link.is_symlink() else None

    def app_says(self, app: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(
                (self.dir / "apps" / app / "state" / "running.json").read_text()
            )
        except (OSError, ValueError):
            return None
        return data

    def running_version(self, app: str) -> str | None:
        """The version the live app process itself reports (None if it is not running)."""
        data = self.app_says(app)
        if data is None:
            return None
        try:
            os.kill(int(data["pid"]), 0)
        except ProcessLookupError:
            return None
        return str(data["version"])

    def journal(self, app: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "state" / f"{app}.journal").read_text())
        return data["plan"]  # type: ignore[no-any-return]

    def versions(self, app: str) -> list[str]:
        d = self.dir / "apps" / app / "versions"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def staging(self, app: str) -> list[str]:
        d = self.dir / "apps" / app / "staging"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class Fleet:
    def __init__(self, root: Path, *, database_url: str = "") -> None:
        self.root = root
        self.database_url = database_url
        self.server_dir = root / "server"
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.hosts: list[Host] = []
        self.server_args: list[str] = []  # more options for `uptend server run`
        # What `uptend server init` does, in this process: a fresh interpreter importing the
        # server for each fleet was most of a fleet's start-up. The command itself (its umask,
        # output and refusals) is tested in tests/server/test_admin_cli.py.
        previous = os.umask(0o077)
        try:
            done = init_data_dir(Settings(data_dir=self.server_dir, database_url=database_url))
        finally:
            os.umask(previous)
        self.admin_token: str = done.admin_token
        self.enroll_token: str = done.enroll_token

    def __enter__(self) -> "Fleet":
        self.start_server()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for host in self.hosts:
            host.kill()
        for host in self.hosts:
            _kill_leftover_apps(host.dir)
        self.stop_server()

    def start_server(self, port: int = 0) -> None:
        log = (self.root / "server.log").open("ab")
        run = [*UPTEND, "server", "run", str(self.server_dir), "--port", str(port)]
        self.server = subprocess.Popen(
            [*run, *self.server_args],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        assert self.server.stdout is not None
        line = self.server.stdout.readline().decode().strip()
        assert line.startswith("listening on "), (line, self.server_log())
        self.url = line.removeprefix("listening on ")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop_server(self) -> None:
        if self.server is not None:
            if self.server.poll() is None:
                self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=30)
            assert self.server.stdout is not None
            self.server.stdout.close()
            self.server = None

    def server_log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""

    def env(self) -> dict[str, str]:
        return {**os.environ, "UPTEND_SERVER": self.url, "UPTEND_TOKEN": self.admin_token}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*UPTEND, *args], capture_output=True, text=True, env=self.env(), check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"uptend {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def publish(self, app: str, version: str, **kwargs: Any) -> None:
        src = make_release(self.root / "releases", version, **kwargs)
        self.cli("release", "publish", app, version, str(src))

    def assign(self, app: str = "demo", group: str = "default", poll: float = 1.0) -> None:
        self.cli("group", "set", group, "--app", app, "--poll-interval", str(poll))

    def add_host(self, name: str = "", group: str = "default") -> Host:
        host = Host(self, name or f"host-{len(self.hosts) + 1}")
        self.cli(
            "agent",
            "enroll",
            str(host.dir),
            "--server",
            self.url,
            "--token",
            self.enroll_token,
            "--name",
            host.name,
            "--group",
            group,
        )
        # Tests run on machines that may have a pending reboot flag: not this test's business.
        cfg = json.loads((host.dir / "agent.json").read_text())
        cfg["check_reboot"] = False
        (host.dir / "agent.json").write_text(json.dumps(cfg))
        self.hosts.append(host)
        return host

    def agents(self) -> list[dict[str, Any]]:
        """Every agent as `uptend fleet list --json` shows it, over all pages."""
        out: list[dict[str, Any]] = []
        cursor: list[str] = []
        while True:
            page = self.json("fleet", "list", "--limit", "1000", *cursor)
            out += page["agents"]
            if page["next_cursor"] is None:
                return out
            cursor = ["--cursor", page["next_cursor"]]

    def agent_app(self, host: Host, app: str) -> dict[str, Any]:
        for agent in self.agents():
            if agent["name"] == host.name:
                for a in agent["apps"]:
                    if a["app"] == app:
                        return a  # type: ignore[no-any-return]
        return {}


def _kill_leftover_apps(agent_dir: Path) -> None:
    for run in agent_dir.glob("apps/*/run.json"):
        try:
            pid = int(json.loads(run.read_text())["pid"])
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


__all__ = ["Fleet", "Host", "make_release", "wait_until"]
