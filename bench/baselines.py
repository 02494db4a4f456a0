"""The workload and the baselines of bench/update.py, measured in the same run.

The workload: the realistic bundle of shared/peers/make_bundles.sh (a venv of pinned
packages installed with --no-compile, ~891 files / ~30 MB) as v1.0 and v1.1 (3 files
edited, 1 added; its command probe fails, so uptend's update ends in a real rollback).
The physical floor: urllib download of the same .tar.gz from the same server, sha256 while
streaming, `tarfile.extractall`, one syncfs. Mender: Debian's mender-client in standalone
mode with the `directory` update module and a signed artifact over HTTP, as
shared/peers/mender_bench.sh does (install 1.1 over 1.0, commit, rollback); `ensure_mender`
says why not when it cannot be installed.
"""

import contextlib
import functools
import hashlib
import http.server
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1e6
MIB = 1 << 20


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def wait_rusage(proc: "subprocess.Popen[Any]") -> tuple[int, float]:
    """Reap `proc` with wait4: (exit code, its peak RSS in MB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024 / MB


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
RECIPE = "make_bundles.sh v1.0/v1.1 + uptend.toml(sleep infinity, probation 0, 1.1 fails) #2"
MANIFEST = '[app]\ncommand = ["sleep", "infinity"]\n\n[health]\nprobation = 0\n'
MANIFEST_1_1 = MANIFEST + 'command = ["false"]\ntimeout = 0.001\n'  # judged unhealthy at once
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

# -- the bundles ---------------------------------------------------------------------------


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
    (v11 / "uptend.toml").write_text(MANIFEST_1_1)
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


# -- the physical floor -----------------------------------------------------------------------


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


# -- Mender -------------------------------------------------------------------------------------


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

    def __init__(self, cache: Path, bundles: Path, recipe: str) -> None:
        self.m = cache / "mender"
        self.art = self.m / "art"
        self.target = self.m / "target" / "agent"
        self.art.mkdir(parents=True, exist_ok=True)
        self.made_artifact_info = False
        key, pub = self.m / "sign.key", self.m / "sign.pub"
        stamp = self.m / "RECIPE"
        if not (stamp.is_file() and stamp.read_text() == recipe):
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
        stamp.write_text(recipe)
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
