"""Agent environments: built offline from a wheelhouse into `PREFIX/versions/<v>/`.

A wheelhouse is a directory of the uptend wheel and the wheels of all its dependencies. An
environment is a venv with pip, into which pip installs uptend==<v> with `--no-index
--find-links WHEELHOUSE` and no pip configuration (`PIP_CONFIG_FILE=/dev/null`): nothing is
fetched from anywhere. It is built under `versions/.<v>.build` and renamed into
`versions/<v>` whole (promise 2: a version on disk is complete or absent), so after a kill
the next build starts over.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from uptend.agent import files
from uptend.errors import ConfigError

_WHEEL = re.compile(r"^uptend-(?P<version>[^-]+)-.*\.whl$")
BUILD_TIMEOUT_S = 600.0


def base_python() -> str:
    """The interpreter the running one was made from (a venv's base), for new venvs."""
    return str(getattr(sys, "_base_executable", "") or sys.executable)


def wheel_version(wheelhouse: Path) -> str:
    """The version of the one uptend wheel in `wheelhouse`."""
    found = sorted(
        m["version"] for p in wheelhouse.glob("uptend-*.whl") if (m := _WHEEL.match(p.name))
    )
    if len(found) != 1:
        raise ConfigError(
            f"{wheelhouse} holds {len(found)} uptend wheels, not one",
            hint="a wheelhouse is one uptend wheel and its dependencies' wheels",
        )
    return found[0]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    return env


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(
        argv,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(
            f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-800:]}",
            hint="the wheelhouse must hold every wheel uptend needs on this platform",
        )


def build_env(
    wheelhouse: Path, versions: Path, version: str | None = None, seed: Path | None = None
) -> str:
    """Build `versions/<v>` from `wheelhouse` unless it is there; return the version.

    `seed`: an environment to start from (the running version's), copied as hard links, so
    pip installs only the wheels whose versions differ (the uptend wheel, usually): seconds
    instead of half a minute. pip replaces a file by unlink and create, never in place, so
    the seed's files are not touched; what the new version no longer needs stays, unused.
    """
    version = version or wheel_version(wheelhouse)
    final = versions / version
    if final.is_dir():
        return version
    versions.mkdir(parents=True, exist_ok=True)
    work = versions / f".{version}.build"
    shutil.rmtree(work, ignore_errors=True)
    try:
        if seed is not None and (seed / "bin" / "python").exists():
            _run(["cp", "-al", str(seed), str(work)], f"copying {seed} to {work}")
        else:
            _run([base_python(), "-m", "venv", str(work)], f"creating the environment {work}")
        pip = [str(work / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index"]
        _run(
            [*pip, "--find-links", str(wheelhouse.resolve()), f"uptend=={version}"],
            f"installing uptend {version} from {wheelhouse}",
        )
        # the venv's scripts name the build dir in their shebangs: the agent runs
        # `bin/python -m ...`, which does not depend on them
        files.syncfs(work)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files.fsync_dir(versions)
    return version


def source_tree() -> Path | None:
    """The source tree of the running uptend, if it runs from one (an editable install)."""
    import uptend

    root = Path(uptend.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "src").is_dir() else None


def make_wheelhouse(dest: Path, tree: Path | None = None) -> Path:
    """A wheelhouse of the running installation: its source tree's wheel and dependencies.

    pip resolves the dependencies as this host's pip is configured (cache, indexes); the
    environment is then built from `dest` offline.
    """
    tree = tree or source_tree()
    if tree is None:
        raise ConfigError(
            "this uptend does not run from a source tree: cannot build a wheelhouse of it",
            hint="pass --wheelhouse DIR (`pip wheel -w DIR uptend==<version>`)",
        )
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet"]
    done = subprocess.run(
        [*argv, "-w", str(dest), str(tree)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(
            f"building a wheelhouse from {tree} failed: {done.stderr[-800:]}",
            hint="pass --wheelhouse DIR",
        )
    return dest
