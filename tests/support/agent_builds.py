"""Real agent builds for the self-update tests: wheelhouses from the source tree.

`base_wheelhouse` is `pip wheel -w DIR <tree>`: the uptend wheel and every dependency's
(from pip's cache and the configured indexes; ~15 s). `variant` builds the uptend wheel of
a temporary copy of the tree with `version` bumped (pyproject.toml and `__version__`) and
an optional patch that breaks it, beside the base's dependency wheels (hard links). An
installed environment is ~130 MB and takes ~25 s to build: `installed_prefix` copies one
built once (hard links, `cp -al`), which `uptend agent install` then finds in place.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from uptend.agent import launcher
from uptend.agent.crashpoints import ARM_ENV

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


def variant(base: Path, dest: Path, version: str, patch: Patch | None = None) -> Path:
    """A wheelhouse of uptend `version` (the tree, bumped and patched) and base's deps."""
    tree = dest.parent / f"{dest.name}-tree"
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
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dest), str(tree)],
        check=True,
        env=pip_env(),
        capture_output=True,
    )
    for wheel in base.glob("*.whl"):
        if not wheel.name.startswith("uptend-"):
            os.link(wheel, dest / wheel.name)
    shutil.rmtree(tree)
    return dest


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
