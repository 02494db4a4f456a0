"""Real agent builds for the self-update tests: wheelhouses from the source tree.

`base_wheelhouse` is `pip wheel -w DIR <tree>`: the uptend wheel and every dependency's
(from pip's cache and the configured indexes; ~15 s). `variant` builds the uptend wheel of
a temporary copy of the tree with `version` bumped (pyproject.toml and `__version__`) and
an optional patch that breaks it, beside the base's dependency wheels (hard links). An
installed environment is ~130 MB and takes ~25 s to build: `share_env` copies one built
once (hard links, `cp -al`), which `uptend agent install` then finds in place.

`SharedBuilds` builds each of these once per test session for every xdist worker: under a
directory named by a hash of the source tree, each build behind its own file lock, made
under a temporary name and renamed into place whole (a build is there complete, or not).
"""

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from uptend.agent import launcher
from uptend.agent.crashpoints import ARM_ENV
from uptend.agent.selfupdate_env import build_env

TREE = Path(__file__).resolve().parents[2]
BASE_VERSION = "0.1.0"
Patch = Callable[[Path], None]


def pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def base_wheelhouse(dest: Path) -> Path:
    dest.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(dest), str(TREE)],
        check=True,
        env=pip_env(),
        capture_output=True,
    )
    return dest


def builder(dest: Path) -> Path:
    """A venv with the tree's build backend, to build wheels without build isolation.

    pip's build isolation makes a fresh environment with setuptools for every wheel (~15 s
    on two loaded cores); the same backend installed once builds the same wheel in seconds.
    """
    subprocess.run([sys.executable, "-m", "venv", str(dest)], check=True, capture_output=True)
    python = str(dest / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "setuptools>=68"],
        check=True,
        env=pip_env(),
        capture_output=True,
    )
    return dest


def variant(
    base: Path, dest: Path, version: str, patch: Patch | None = None, build: Path | None = None
) -> Path:
    """A wheelhouse of uptend `version` (the tree, bumped and patched) and base's deps.

    `build`: a `builder` venv to build the wheel with (default: pip's build isolation).
    """
    tree = dest.parent / f"{dest.name}-tree"
    shutil.rmtree(tree, ignore_errors=True)  # a build killed before it cleaned up
    tree.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(TREE / name, tree / name)
    shutil.copytree(TREE / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(f'version = "{BASE_VERSION}"', f'version = "{version}"', 1)
    )
    init = tree / "src" / "uptend" / "__init__.py"
    init.write_text(init.read_text().replace(BASE_VERSION, version))
    if patch is not None:
        patch(tree / "src" / "uptend")
    dest.mkdir(parents=True)
    python, isolation = (
        (sys.executable, [])
        if build is None
        else (
            str(build / "bin" / "python"),
            ["--no-build-isolation"],
        )
    )
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *isolation,
            "-w",
            str(dest),
            str(tree),
        ],
        check=True,
        env=pip_env(),
        capture_output=True,
    )
    for wheel in base.glob("*.whl"):
        if not wheel.name.startswith("uptend-"):
            os.link(wheel, dest / wheel.name)
    shutil.rmtree(tree)
    return dest


def tree_hash() -> str:
    """What a build is made of: pyproject.toml, README.md and every file under src/."""
    h = hashlib.sha256()
    paths = [TREE / "pyproject.toml", TREE / "README.md"]
    paths += sorted(
        p for p in (TREE / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for p in paths:
        h.update(str(p.relative_to(TREE)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


class SharedBuilds:
    """The session's agent builds, shared by every worker: each made once, on first use.

    `root` is a directory all the session's workers see (pytest's base temp of the session);
    the builds go under `root/agent-builds-<tree hash>`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root / f"agent-builds-{tree_hash()}"
        self.root.mkdir(parents=True, exist_ok=True)

    def _once(self, name: str, build: Callable[[Path], object]) -> Path:
        final = self.root / name
        with _locked(self.root / f".{name}.lock"):
            if not final.exists():
                work = self.root / f".{name}.build"
                shutil.rmtree(work, ignore_errors=True)
                build(work)
                work.rename(final)
        return final

    @property
    def base(self) -> Path:
        """The wheelhouse of the tree as it is (BASE_VERSION)."""
        return self._once("wheelhouse-base", base_wheelhouse)

    @property
    def env(self) -> Path:
        """An environment built from `base`, for `share_env`."""
        base = self.base

        def build(work: Path) -> None:
            build_env(base, work / "versions")

        return self._once("env-base", build) / "versions" / BASE_VERSION

    def variant(self, name: str, version: str, patch: Patch | None = None) -> Path:
        """The wheelhouse of the tree bumped to `version` and patched (`name` says how)."""
        base, build = self.base, self._once("builder", builder)
        return self._once(
            f"wheelhouse-{name}", lambda work: variant(base, work, version, patch, build)
        )


def share_env(built: Path, prefix: Path, version: str = BASE_VERSION) -> None:
    """Put an environment built once at PREFIX/versions/<v> (hard links: instant)."""
    (prefix / "versions").mkdir(parents=True)
    subprocess.run(["cp", "-al", str(built), str(prefix / "versions" / version)], check=True)


class ServiceStandIn:
    """What systemd's Restart=always does for the launcher (systemd is not running here).

    A fake, named as such: it runs PREFIX/bin/uptend-agent, and runs it again whenever the
    process ends, until `stop`; `pids` lists every process it started.
    """

    def __init__(
        self,
        prefix: Path,
        log: Path,
        env: dict[str, str] | None = None,
        arms: list[str] | None = None,
    ) -> None:
        self.prefix = prefix
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.arms = list(arms or [])  # UPTEND_CRASHPOINT of each next start, then none
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                env = dict(self.env)
                if self.arms:
                    env[ARM_ENV] = self.arms.pop(0)
                with self.log.open("ab") as out:
                    self.proc = subprocess.Popen(
                        [str(self.prefix / "bin" / "uptend-agent"), "--keep-apps-on-exit"],
                        stdout=out,
                        stderr=out,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                self.pids.append(self.proc.pid)
            self.exits.append(self.proc.wait())
            self._stop.wait(0.3)  # RestartSec

    def agent_argv(self) -> list[str]:
        """The command line of the agent running now (the launcher exec'd into it)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return []
        try:
            raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        except OSError:
            return []
        return [a.decode() for a in raw.split(b"\0") if a]

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=30)


def self_state(prefix: Path) -> dict[str, object]:
    return launcher.load(prefix)
