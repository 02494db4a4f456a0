"""Benchmark: uptend's update and rollback beside the physical floor and Mender, same run.

Usage (from the repo root):

    .venv/bin/python bench/update.py [--runs 3] [--cache /tmp/uptend-bench] [--no-mender]

What it does:

1. Builds the realistic bundle of shared/peers/make_bundles.sh (a venv of pinned packages
   installed with --no-compile, ~891 files / ~30 MB) as v1.0 and v1.1 (3 files edited, 1
   added), each with an `uptend.toml` (a tiny long-running command, probation 0), into
   CACHE/bundles; reused when present.
2. Starts a real `uptend server run` on 127.0.0.1, publishes both versions through the CLI
   and enrolls one agent data dir per run through the CLI.
3. Per run, in a child process (so its peak RSS is its own), drives uptend's own
   `AppDriver` against that server exactly as `Agent._update` does: install 1.0 (not
   timed), then `update_to(1.1)`. Every action the machine orders is timed; the health
   check of 1.1 runs for real, then its verdict is turned into a failure so the machine
   goes through ROLLING_BACK (SwitchTo 1.0), which is the rollback that is timed.
4. The physical floor: urllib download of the same .tar.gz from the same server, sha256
   while streaming, `tarfile.extractall`, one syncfs.
5. Mender (Debian's mender-client in standalone mode, `directory` update module, signed
   artifact over HTTP), as shared/peers/mender_bench.sh does: install 1.1 over 1.0, then
   rollback. Skipped with a message when mender cannot be installed.

It exits 0 whatever the figures are (a benchmark, not a test); non-zero only on errors.
"""

import argparse
import contextlib
import functools
import hashlib
import http.server
import importlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

APP = "bench"
UPTEND = [sys.executable, "-m", "uptend"]
PINNED = [
    "requests==2.32.3",
    "httpx==0.28.1",
    "pydantic==2.14.3",
    "sqlalchemy==2.0.57",
    "pyyaml==6.0.3",
    "jinja2==3.1.6",
    "click==8.5.1",
]
# Bump when the recipe changes: a cached bundle with another stamp is rebuilt.
RECIPE = "make_bundles.sh v1.0/v1.1 + uptend.toml(sleep infinity, probation 0) #1"
MANIFEST = '[app]\ncommand = ["sleep", "infinity"]\n\n[health]\nprobation = 0\n'
EXCLUDE = (
    "pip",
    "pip-*",
    "setuptools",
    "setuptools-*",
    "pkg_resources",
    "_distutils_hack",
    "distutils-precedence.pth",
    "__pycache__",
)
TARGETS = {"update_vs_mender": 0.6, "update_vs_floor": 1.3, "rollback_vs_mender": 0.3}
RSS_TARGET_MB = 80.0
MB = 1e6
MIB = 1 << 20


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _disk_counters() -> list[str]:
    return [f.read_text() for f in sorted(Path("/sys/block").glob("*/stat"))]


def settle(timeout_s: float = 20.0) -> None:
    """Flush, then wait until no block device moves (writeback or discards of earlier steps).

    On this kind of machine (ext4 mounted with `discard`), deleting a synced tree keeps the
    disk busy for seconds after `rm` returns; without this, each step pays for the last.
    """
    os.sync()
    deadline = time.monotonic() + timeout_s
    before, quiet = _disk_counters(), 0
    while quiet < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _disk_counters()
        quiet = quiet + 1 if now == before else 0
        before = now


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def wait_rusage(proc: "subprocess.Popen[Any]") -> tuple[int, float]:
    """Reap `proc` with wait4: (exit code, its peak RSS in MB, children it waited for too)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024 / MB


# -- 1. bundles ---------------------------------------------------------------------------


def gen_module(name: str, seed: int) -> str:
    """The deterministic ~6 KB module of make_bundles.sh's gen_module (same bytes)."""
    r = random.Random(seed)
    out = [f'"""{name}: generated agent module (seed {seed})."""', "import json, os, time", ""]
    for i in range(40):
        a, b = r.randint(1, 999), r.randint(1, 999)
        out.append(f'def f_{i}(x):\n    """step {i}"""\n    return (x * {a} + {b}) % 65521\n')
    return "\n".join(out) + "\n"


def build_bundles(cache: Path) -> Path:
    """CACHE/bundles/v1.0 and v1.1 (reused if built by this recipe); returns CACHE/bundles."""
    bundles = cache / "bundles"
    stamp = bundles / "RECIPE"
    if stamp.is_file() and stamp.read_text() == RECIPE:
        say(f"bundles: reusing {bundles}")
        return bundles
    say(f"bundles: building into {bundles} (pip install of {len(PINNED)} pinned packages)")
    tmp = cache / "bundles.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(bundles, ignore_errors=True)
    venv = tmp / "bv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", *PINNED])
    sp = next((venv / "lib").glob("python3*/site-packages"))
    v10 = tmp / "v1.0"
    shutil.copytree(sp, v10 / "lib" / "site-packages", ignore=shutil.ignore_patterns(*EXCLUDE))
    agent = v10 / "app" / "agent"
    agent.mkdir(parents=True)
    (v10 / "VERSION").write_text("1.0\n")
    for m in ("__init__", "main", "collector", "transport", "config", "state", "health"):
        (agent / f"{m}.py").write_text(gen_module(m, ord(m[0]) * 7 + len(m)))
    (agent / "version.py").write_text('__version__ = "1.0"\n')
    (v10 / "uptend.toml").write_text(MANIFEST)
    # v1.1: a code-only release, 3 files edited and 1 added
    v11 = tmp / "v1.1"
    shutil.copytree(v10, v11, symlinks=True)
    agent = v11 / "app" / "agent"
    (v11 / "VERSION").write_text("1.1\n")
    (agent / "version.py").write_text('__version__ = "1.1"\n')
    with (agent / "main.py").open("a") as f:
        f.write('\ndef new_feature():\n    return "v1.1 feature"\n')
    collector = agent / "collector.py"
    collector.write_text(collector.read_text().replace("% 65521", "% 65519"))
    (agent / "feature.py").write_text(gen_module("feature", 1101))
    shutil.rmtree(venv)
    stamp_tmp = tmp / "RECIPE"
    stamp_tmp.write_text(RECIPE)
    tmp.rename(bundles)
    return bundles


def tree_stats(path: Path) -> tuple[int, int]:
    files = size = 0
    for d, _, names in os.walk(path):
        for n in names:
            files += 1
            size += (Path(d) / n).lstat().st_size
    return files, size


# -- 2. uptend server + CLI -----------------------------------------------------------------


class Server:
    """A real `uptend server run` on 127.0.0.1, driven through the CLI like tests/fleet.py."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "server"
        info = json.loads(run([*UPTEND, "server", "init", str(self.dir), "--json"]).stdout)
        self.admin: str = info["admin_token"]
        self.enroll_token: str = info["enroll_token"]
        self.log = (root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [*UPTEND, "server", "run", str(self.dir), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"uptend server did not start: {line!r}, see {root}/server.log")
        self.url = line.removeprefix("listening on ")

    def cli(self, *args: str) -> str:
        env = {**os.environ, "UPTEND_SERVER": self.url, "UPTEND_TOKEN": self.admin}
        return run([*UPTEND, *args], env=env).stdout

    def enroll(self, agent_dir: Path, name: str) -> None:
        self.cli(
            "agent", "enroll", str(agent_dir), "--server", self.url,
            "--token", self.enroll_token, "--name", name,
        )  # fmt: skip

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


def kill_leftover_apps(agent_dir: Path) -> None:
    for record in agent_dir.glob("apps/*/run.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.killpg(int(json.loads(record.read_text())["pid"]), signal.SIGKILL)


# -- 3. the child: uptend's own AppDriver, in-process -----------------------------------------

Span = tuple[str, float, float]


def timed(spans: list[Span], label: str, fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def inner(*args: P.args, **kwargs: P.kwargs) -> R:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((label, t, time.perf_counter()))

    return inner


def reset_peak_rss() -> bool:
    """Reset VmHWM of this process (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024 / MB
    return float("nan")


def child(agent_dir: Path) -> dict[str, Any]:
    """Install 1.0, then update to 1.1 and roll back to 1.0 through the machine; time it."""
    # Imported here: the parent does not need them, and the child's RSS is the agent's.
    from tuf.api.metadata import TargetFile

    from uptend import archive
    from uptend.agent import config as agent_config
    from uptend.agent import download, files, machine
    from uptend.agent.download import target_url
    from uptend.agent.driver import AppDriver, find_target
    from uptend.agent.layout import Layout
    from uptend.agent.outbox import Outbox
    from uptend.agent.supervisor import Supervisor
    from uptend.agent.tuf_session import TufSession

    # The real agent process also holds the runner and its control client (httpx): import
    # them so the RSS measured here carries the same import footprint.
    importlib.import_module("uptend.agent.runner")
    spans: list[Span] = []
    cpu_s: dict[str, float] = {}  # CPU time of this process per action (vs wall: I/O waits)

    class BenchDriver(AppDriver):
        """AppDriver with every action timed; optionally fails 1.1's health verdict."""

        fail_probation_of: str | None = None

        def _perform(self, action: machine.Action) -> machine.Event | None:
            t, cpu = time.perf_counter(), time.process_time()
            event = super()._perform(action)
            cpu_s[f"{type(action).__name__}:{action.version}"] = time.process_time() - cpu
            if (
                isinstance(action, machine.Probe)
                and action.version == self.fail_probation_of
                and isinstance(event, machine.Healthy)
            ):
                # The real probe ran and passed; the bench declares it failed to time the
                # machine's ROLLING_BACK step (SwitchTo the last good version).
                event = machine.Failed("bench: simulated failed health check", True)
            spans.append((f"{type(action).__name__}:{action.version}", t, time.perf_counter()))
            return event

    # Sub-steps of the update path, timed where the driver calls them.
    download._fetch_into = timed(spans, "fetch", download._fetch_into)
    archive.unpack = timed(spans, "unpack archive", archive.unpack)
    files.syncfs = timed(spans, "syncfs", files.syncfs)
    files.fsync_dir = timed(spans, "fsync_dir", files.fsync_dir)
    files.point_current_at = timed(spans, "point current", files.point_current_at)
    verify = timed(spans, "sha256 verify", TargetFile.verify_length_and_hashes)
    setattr(TargetFile, "verify_length_and_hashes", verify)  # noqa: B010 - patch a method

    layout = Layout(agent_dir)
    cfg = agent_config.load(layout)
    layout.make()
    supervisor = Supervisor(layout)
    supervisor.stop = timed(spans, "app stop", supervisor.stop)  # type: ignore[method-assign]
    supervisor.start = timed(spans, "app start", supervisor.start)  # type: ignore[method-assign]
    session = TufSession(layout.tuf_dir, cfg.metadata_url, layout.trusted_root.read_bytes())
    try:
        session.refresh()
        driver = BenchDriver(
            layout,
            APP,
            supervisor,
            Outbox(layout),
            lambda: session,
            cfg.targets_url,
            idle=lambda: None,
            stop=threading.Event(),
        )
        driver.journal.save = timed(spans, "journal save", driver.journal.save)  # type: ignore[method-assign]
        plan = driver.update_to(find_target(session, APP, "1.0"))
        if plan.current != "1.0":
            raise RuntimeError(f"installing 1.0 failed: {plan}")
        signed = find_target(session, APP, "1.1")  # the agent looks up before update_to
        driver.fail_probation_of = "1.1"
        settle()  # nothing from the 1.0 install left for the timed part to pay for
        rss_before = proc_status_mb("VmRSS")
        hwm_reset = reset_peak_rss()
        spans.clear()
        cpu_s.clear()
        t0 = time.perf_counter()
        plan = driver.update_to(signed)
        t_end = time.perf_counter()
        peak = proc_status_mb("VmHWM")
        versions = sorted(p.name for p in layout.versions(APP).iterdir())
        if plan.current != "1.0" or files.read_current(layout.app_dir(APP)) != "1.0":
            raise RuntimeError(f"rollback did not end on 1.0: {plan}")
        if "1.1" not in versions:
            raise RuntimeError(f"1.1 was not unpacked: {versions}")
        if not supervisor.alive(APP) or supervisor.running_version(APP) != "1.0":
            raise RuntimeError("1.0 is not running after the rollback")
        # What clean_staging does to an old version after a later update: remove a synced
        # tree. Not on the update's path, but it blocks the agent loop.
        t = time.perf_counter()
        files.remove_tree(layout.version_dir(APP, "1.1"))
        remove_old_s = time.perf_counter() - t
        attempt = max(layout.update_logs.glob(f"{APP}-*-1.1.log"), key=lambda p: p.stat().st_mtime)
        return {
            "t0": t0,
            "t_end": t_end,
            "spans": spans,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "peak_is_update_only": hwm_reset,
            "remove_old_s": remove_old_s,
            "cpu_s": cpu_s,
            "url": target_url(cfg.targets_url, signed.info),
            "length": signed.info.length,
            "sha256": signed.info.hashes["sha256"],
            "unpacked_size": signed.custom.unpacked_size,
            "files": signed.custom.files,
            "attempt_log": attempt.read_text(),
        }
    finally:
        supervisor.stop_all()
        session.close()


@dataclass
class UptendRun:
    update_s: float  # start of Download(1.1) -> end of SwitchTo(1.1): durable switch
    rollback_s: float  # Failed verdict -> end of SwitchTo(1.0) (ROLLING_BACK)
    to_healthy_s: float  # update_to() start -> end of Probe(1.1) (probation 0)
    log_update_s: float  # from the attempt log: "downloading" -> "probation"
    update_to_s: float  # whole update_to(): update, probe, rollback, report, staging cleanup
    remove_old_s: float  # files.remove_tree of a synced version dir (clean_staging's job)
    rss_before_mb: float
    steps: dict[str, float]
    peak_rss_mb: float
    peak_is_update_only: bool
    child_maxrss_mb: float
    info: dict[str, Any] = field(default_factory=dict)


def _log_seconds(log_text: str, first: str, then: str) -> float:
    from datetime import datetime

    stamps: dict[str, datetime] = {}
    for line in log_text.splitlines():
        stamp, _, message = line.partition(" ")
        for key in (first, then):
            if message.startswith(key) and key not in stamps:
                stamps[key] = datetime.fromisoformat(stamp)
    if first not in stamps or then not in stamps:
        return float("nan")
    return (stamps[then] - stamps[first]).total_seconds()


def analyse(out: dict[str, Any], maxrss: float) -> UptendRun:
    spans: list[Span] = [(str(n), float(s), float(e)) for n, s, e in out["spans"]]

    def one(label: str) -> Span:
        found = [s for s in spans if s[0] == label]
        if len(found) != 1:
            raise RuntimeError(f"expected one {label} action, got {found}")
        return found[0]

    dl, unpack, switch = one("Download:1.1"), one("Unpack:1.1"), one("SwitchTo:1.1")
    probe, back = one("Probe:1.1"), one("SwitchTo:1.0")

    def inside(label: str, outer: Span) -> float:
        return sum(e - s for name, s, e in spans if name == label and outer[1] <= s <= outer[2])

    fetch = inside("fetch", dl)
    verify_dl = inside("sha256 verify", dl)
    fsync_dl = inside("fsync_dir", dl)
    verify_up = inside("sha256 verify", unpack)
    unpack_archive = inside("unpack archive", unpack)
    sync = inside("syncfs", unpack)
    fsync_up = inside("fsync_dir", unpack)
    update_s = switch[2] - dl[1]
    steps = {
        "download: fetch over HTTP + write": fetch,
        "download: fsync file + sha256 re-read": dl[2] - dl[1] - fetch - fsync_dl,
        "  of which sha256 re-read (verify #1)": verify_dl,
        "download: fsync staging dir": fsync_dl,
        "unpack: sha256 re-read (verify #2)": verify_up,
        "unpack: archive.unpack (gunzip + checks + write)": unpack_archive,
        "unpack: CPU time of the whole Unpack action": out["cpu_s"]["Unpack:1.1"],
        "unpack: syncfs": sync,
        "unpack: rename + fsync dir + manifest": unpack[2]
        - unpack[1]
        - verify_up
        - unpack_archive
        - sync,
        "unpack: of which fsync dirs": fsync_up,
        "switch: stop 1.0 app": inside("app stop", switch),
        "switch: point current (rename + fsync)": inside("point current", switch),
        "switch: start 1.1 app": inside("app start", switch),
        "journal saves between actions (x3)": update_s
        - (dl[2] - dl[1])
        - (unpack[2] - unpack[1])
        - (switch[2] - switch[1]),
        "rollback: SwitchTo(1.0) action alone": back[2] - back[1],
        "rollback: stop 1.1 app": inside("app stop", back),
        "rollback: point current": inside("point current", back),
        "rollback: start 1.0 app": inside("app start", back),
    }
    return UptendRun(
        update_s=update_s,
        rollback_s=back[2] - probe[2],
        to_healthy_s=probe[2] - out["t0"],
        log_update_s=_log_seconds(out["attempt_log"], "downloading", "probation"),
        update_to_s=out["t_end"] - out["t0"],
        remove_old_s=out["remove_old_s"],
        rss_before_mb=out["rss_before_mb"],
        steps=steps,
        peak_rss_mb=out["peak_rss_mb"],
        peak_is_update_only=out["peak_is_update_only"],
        child_maxrss_mb=maxrss,
        info={k: out[k] for k in ("url", "length", "sha256", "unpacked_size", "files")},
    )


def uptend_run(agent_dir: Path, log: Path) -> UptendRun:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(agent_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        data = proc.stdout.read()
        proc.stdout.close()
        code, maxrss = wait_rusage(proc)
    kill_leftover_apps(agent_dir)
    if code != 0:
        raise RuntimeError(f"the uptend child exited {code}; see {log}")
    return analyse(json.loads(data), maxrss)


# -- 4. the physical floor ----------------------------------------------------------------


@dataclass
class FloorRun:
    total_s: float
    download_s: float
    extract_s: float
    syncfs_s: float


def floor_run(url: str, sha256: str, where: Path) -> FloorRun:
    from uptend.agent.files import syncfs

    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    tgz, out = where / "bundle.tar.gz", where / "tree"
    settle()
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with urllib.request.urlopen(url) as r, tgz.open("wb") as f:
        while chunk := r.read(MIB):
            h.update(chunk)
            f.write(chunk)
    if h.hexdigest() != sha256:
        raise RuntimeError(f"floor: sha256 of {url} differs from the signed one")
    t1 = time.perf_counter()
    with tarfile.open(tgz, "r:gz") as tar:
        tar.extractall(out, filter="data")
    t2 = time.perf_counter()
    syncfs(out)
    t3 = time.perf_counter()
    if not (out / "uptend.toml").is_file():
        raise RuntimeError("floor: extracted tree has no uptend.toml")
    shutil.rmtree(where)
    return FloorRun(t3 - t0, t1 - t0, t2 - t1, t3 - t2)


# -- 5. Mender --------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


@contextlib.contextmanager
def static_server(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def ensure_mender() -> str | None:
    """None if mender and mender-artifact are usable, else why not."""
    if shutil.which("mender") and shutil.which("mender-artifact"):
        return None
    if os.geteuid() != 0:
        return "mender is not installed and installing it needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("mender: apt-get update && apt-get install -y mender-client mender-artifact")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "mender-client", "mender-artifact"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    if shutil.which("mender") and shutil.which("mender-artifact"):
        return None
    return "apt-get installed nothing usable as mender / mender-artifact"


@dataclass
class MenderRun:
    install_s: float
    commit_s: float
    rollback_s: float
    install_rss_mb: float
    rollback_rss_mb: float


class Mender:
    """mender_bench.sh in Python: standalone mode, `directory` module, signed gzip artifacts."""

    def __init__(self, cache: Path, bundles: Path) -> None:
        self.m = cache / "mender"
        self.art = self.m / "art"
        self.target = self.m / "target" / "agent"
        self.art.mkdir(parents=True, exist_ok=True)
        self.made_artifact_info = False
        key, pub = self.m / "sign.key", self.m / "sign.pub"
        stamp = self.m / "RECIPE"
        if not (stamp.is_file() and stamp.read_text() == RECIPE):
            for old in self.art.glob("*.mender"):
                old.unlink()
        if not key.is_file():
            run(
                ["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", str(key)]
            )
            run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)])
        for v in ("1.0", "1.1"):
            art = self.art / f"agent-{v}.mender"
            if art.is_file():
                continue
            say(f"mender: writing signed artifact for {v}")
            p = self.m / f"p{v}"
            shutil.rmtree(p, ignore_errors=True)
            p.mkdir()
            run(["tar", "-C", str(bundles / f"v{v}"), "-cf", str(p / "update.tar"), "."])
            (p / "dest_dir").write_text(f"{self.target}\n")
            run(
                ["mender-artifact", "write", "module-image", "-T", "directory", "-t",
                 "bench-test", "-n", f"agent-{v}", "--compression", "gzip", "-k", str(key),
                 "-o", str(art), "-f", "update.tar", "-f", "dest_dir"],
                cwd=p,
            )  # fmt: skip
            shutil.rmtree(p)
        stamp.write_text(RECIPE)
        (self.m / "mender.conf").write_text(
            json.dumps(
                {
                    "DeviceTypeFile": f"{self.m}/data/device_type",
                    "ModulesWorkPath": f"{self.m}/data/modules/v3",
                    "ArtifactScriptsPath": f"{self.m}/data/scripts",
                    "RootfsScriptsPath": f"{self.m}/data/scripts-rootfs",
                    "ArtifactVerifyKey": str(pub),
                    "DBus": {"Enabled": False},
                }
            )
        )
        (self.m / "fallback.conf").write_text("{}\n")
        ai = Path("/etc/mender/artifact_info")
        if not ai.exists():
            ai.parent.mkdir(parents=True, exist_ok=True)
            ai.write_text("artifact_name=factory\n")
            self.made_artifact_info = True

    def close(self) -> None:
        if self.made_artifact_info:
            Path("/etc/mender/artifact_info").unlink(missing_ok=True)

    def _mender(self, *args: str) -> tuple[float, float]:
        cmd = [
            "mender", "--config", str(self.m / "mender.conf"), "--fallback-config",
            str(self.m / "fallback.conf"), "--data", str(self.m / "data"), "--no-syslog", *args,
        ]  # fmt: skip
        log = self.m / "last.log"
        with log.open("wb") as out:
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            code, rss = wait_rusage(proc)
            dt = time.perf_counter() - t
        if code != 0:
            raise RuntimeError(f"mender {' '.join(args)} exited {code}:\n{log.read_text()[-2000:]}")
        return dt, rss

    def version_on_disk(self) -> str:
        try:
            return (self.target / "VERSION").read_text().strip()
        except OSError:
            return "-"

    def run_once(self, base_url: str) -> MenderRun:
        shutil.rmtree(self.m / "data", ignore_errors=True)
        shutil.rmtree(self.target.parent, ignore_errors=True)
        (self.m / "data" / "scripts").mkdir(parents=True)
        self.target.parent.mkdir(parents=True)
        (self.m / "data" / "device_type").write_text("device_type=bench-test\n")
        self._mender("install", str(self.art / "agent-1.0.mender"))
        self._mender("commit")
        if self.version_on_disk() != "1.0":
            raise RuntimeError("mender: 1.0 not installed")
        settle()
        install_s, install_rss = self._mender("install", f"{base_url}/agent-1.1.mender")
        if self.version_on_disk() != "1.1":
            raise RuntimeError("mender: 1.1 not installed")
        rollback_s, rollback_rss = self._mender("rollback")
        if self.version_on_disk() != "1.0":
            raise RuntimeError("mender: rollback did not restore 1.0")
        # commit is timed on its own, on a second install (it ends the install for good)
        self._mender("install", f"{base_url}/agent-1.1.mender")
        commit_s, _ = self._mender("commit")
        return MenderRun(install_s, commit_s, rollback_s, install_rss, rollback_rss)


# -- report -----------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_runs(values: list[float], unit: str = "s") -> str:
    digits = 3 if unit == "s" else 1
    return " / ".join(f"{v:.{digits}f}" for v in values)


def verdict(value: float, limit: float) -> str:
    return "MET" if value <= limit else "MISSED"


def report(
    ups: list[UptendRun],
    floors: list[FloorRun],
    menders: list[MenderRun],
    mender_note: str | None,
    bundle_note: str,
) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def series(what: str, values: list[float], target: str = "", *, unit: str = "s") -> float:
        """A row with the median (max for MB) and every run; returns the figure shown."""
        value = max(values) if unit == "MB" else med(values)
        digits = 3 if unit == "s" else 1
        rows.append((what, f"{value:.{digits}f} {unit}", fmt_runs(values, unit), target))
        return value

    def ratio(what: str, value: float, limit: float) -> None:
        rows.append((what, f"{value:.2f} x", "", f"<= {limit} x: {verdict(value, limit)}"))

    upd = series("uptend update 1.0->1.1 (download..durable switch)", [u.update_s for u in ups])
    series("  same, from the attempt log (downloading->probation)", [u.log_update_s for u in ups])
    series("  update_to() start -> healthy (probation 0)", [u.to_healthy_s for u in ups])
    series("  update_to() whole (+ rollback, report, cleanup)", [u.update_to_s for u in ups])
    series("  off-path: remove an old synced version dir", [u.remove_old_s for u in ups])
    rb = series("uptend rollback (ROLLING_BACK: SwitchTo 1.0)", [u.rollback_s for u in ups])
    fl = series("physical floor (urllib+sha256, tarfile, syncfs)", [f.total_s for f in floors])
    series("  floor: download + sha256 to file", [f.download_s for f in floors])
    series("  floor: tarfile.extractall", [f.extract_s for f in floors])
    series("  floor: syncfs", [f.syncfs_s for f in floors])
    mender_install = mender_rollback = float("nan")
    if menders:
        mender_install = series(
            "Mender install 1.1 over HTTP (standalone)", [m.install_s for m in menders]
        )
        series("Mender commit", [m.commit_s for m in menders])
        mender_rollback = series("Mender rollback", [m.rollback_s for m in menders])
        series("Mender peak RSS, install", [m.install_rss_mb for m in menders], unit="MB")
        series("Mender peak RSS, rollback", [m.rollback_rss_mb for m in menders], unit="MB")
    peak_what = (
        "uptend agent peak RSS during update+rollback"
        if all(u.peak_is_update_only for u in ups)
        else "uptend agent peak RSS (whole child)"
    )
    peak = max(u.peak_rss_mb for u in ups)
    series(
        peak_what,
        [u.peak_rss_mb for u in ups],
        f"<= {RSS_TARGET_MB:.0f} MB: {verdict(peak, RSS_TARGET_MB)}",
        unit="MB",
    )
    series(
        "  RSS just before the update (1.0 installed)", [u.rss_before_mb for u in ups], unit="MB"
    )
    series("  child lifetime ru_maxrss", [u.child_maxrss_mb for u in ups], unit="MB")
    ratio("ratio update / floor", upd / fl, TARGETS["update_vs_floor"])
    if menders:
        ratio("ratio update / Mender install", upd / mender_install, TARGETS["update_vs_mender"])
        ratio(
            "ratio rollback / Mender rollback", rb / mender_rollback, TARGETS["rollback_vs_mender"]
        )
    else:
        rows.append(("ratios against Mender", "skipped", "", mender_note or ""))

    print(bundle_note)
    print(f"runs: {len(ups)}; figures are medians (peak RSS: max)\n")
    header = ("what", "value", "runs", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for i, r in enumerate([header, *rows]):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if menders:
        print(
            "\nnote: Mender's `directory` module removes the old tree in install (after tar'ing"
            " it as a backup) and the new one in rollback (rm -rf); removing a synced 30 MB"
            f" tree costs {med([u.remove_old_s for u in ups]):.2f} s on this disk (row"
            " 'off-path' above), which weighs on Mender's figures here."
        )
    print("\nwhere uptend's update time goes (medians, s):")
    for key in ups[0].steps:
        vals = [u.steps[key] for u in ups]
        print(f"  {key:<52} {med(vals):7.3f}   ({fmt_runs(vals)})")


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/uptend-bench"))
    ap.add_argument("--no-mender", action="store_true", help="skip the Mender comparison")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0

    cache: Path = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    bundles = build_bundles(cache)
    nfiles, size = tree_stats(bundles / "v1.0")
    bundle_note = f"bundle v1.0: {nfiles} files, {size / MB:.1f} MB ({bundles})"
    say(bundle_note)

    mender: Mender | None = None
    mender_note = "--no-mender given" if args.no_mender else ensure_mender()
    if mender_note is None:
        mender = Mender(cache, bundles)
    else:
        say(f"mender: skipped ({mender_note})")

    work = cache / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    server = Server(work)
    ups: list[UptendRun] = []
    floors: list[FloorRun] = []
    menders: list[MenderRun] = []
    try:
        say(f"uptend server at {server.url}; publishing 1.0 and 1.1")
        server.cli("group", "set", "default", "--app", APP, "--poll-interval", "1")
        for v in ("1.0", "1.1"):
            t = time.perf_counter()
            server.cli("release", "publish", APP, v, str(bundles / f"v{v}"))
            say(f"  published {v} in {time.perf_counter() - t:.1f} s")
        agents = [work / f"agent-{i}" for i in range(1, args.runs + 1)]
        for a in agents:
            server.enroll(a, a.name)
        with contextlib.ExitStack() as stack:
            base = stack.enter_context(static_server(mender.art)) if mender else ""
            for i, agent in enumerate(agents, 1):
                up = uptend_run(agent, work / f"{agent.name}.child.log")
                ups.append(up)
                fl = floor_run(up.info["url"], up.info["sha256"], work / "floor")
                floors.append(fl)
                line = (
                    f"run {i}: uptend update {up.update_s:.3f} s, rollback {up.rollback_s:.3f} s,"
                    f" peak {up.peak_rss_mb:.1f} MB; floor {fl.total_s:.3f} s"
                )
                if mender is not None:
                    mr = mender.run_once(base)
                    menders.append(mr)
                    line += f"; mender install {mr.install_s:.3f} s, rollback {mr.rollback_s:.3f} s"
                say(line)
        info = ups[0].info
        bundle_note += (
            f"; target {info['length'] / MB:.2f} MB .tar.gz, {info['files']} entries,"
            f" {info['unpacked_size'] / MB:.1f} MB unpacked"
        )
    finally:
        server.close()
        for a in work.glob("agent-*"):
            kill_leftover_apps(a)
        if mender is not None:
            mender.close()
    report(ups, floors, menders, mender_note, bundle_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
