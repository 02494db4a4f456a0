"""Data dirs are private on both sides: 0700 directories, 0600 files, whatever came before.

Each test runs with umask 0 (the worst an operator's shell can hand us: every mode left to
the umask would be world-writable) and starts from directories that already exist with
0755, as an older uptend or an operator's `mkdir` leaves them. Modes are read after the
real commands ran (`server init`, `server run` with a publish, `agent enroll`, an update by
`agent run`). As root, the attack itself is run too: a process as user `nobody` tries to
read the database and the keys.
"""

import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import UPTEND, Fleet
from uptend.server.services.setup import init_data_dir
from uptend.server.settings import Settings

NOBODY = 65534


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """umask 0 for the test and every process it starts (restored afterwards)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def existing_open_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o755)
    return path


def assert_server_private(data: Path) -> None:
    modes = {
        p.relative_to(data).as_posix(): oct(mode(p))
        for p in (data, data / "uptend.db", data / "server.json", data / "uploads")
    }
    assert modes == {".": "0o700", "uptend.db": "0o600", "server.json": "0o600", "uploads": "0o700"}
    keys = data / "tuf" / "keys"
    assert mode(keys) == 0o700
    assert {k.name: mode(k) for k in keys.iterdir()} == {k.name: 0o600 for k in keys.iterdir()}
    assert any(keys.iterdir())


def test_server_init_makes_an_existing_open_dir_private(tmp_path: Path, umask_zero: None) -> None:
    data = existing_open_dir(tmp_path / "srv")
    done = subprocess.run([*UPTEND, "server", "init", str(data)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert_server_private(data)


def test_init_data_dir_itself_does_not_rely_on_the_umask(tmp_path: Path, umask_zero: None) -> None:
    """The service, without the CLI's umask: every private mode is set explicitly."""
    data = existing_open_dir(tmp_path / "srv")
    init_data_dir(Settings(data_dir=data))
    assert_server_private(data)


def test_server_run_tightens_an_old_data_dir_and_keeps_it_private(
    tmp_path: Path, umask_zero: None
) -> None:
    fleet = Fleet(tmp_path)
    data = fleet.server_dir
    for path, loose in [(data, 0o755), (data / "uptend.db", 0o644), (data / "server.json", 0o644)]:
        path.chmod(loose)
    (data / "uploads").chmod(0o777)
    (data / "tuf" / "keys").chmod(0o755)
    (data / "tuf" / "keys" / "targets.pem").chmod(0o644)
    with fleet:
        assert_server_private(data)
        fleet.publish("demo", "1.0")  # an upload, a database write, a TUF publish
        assert_server_private(data)
        journals = [
            data / f"uptend.db{s}" for s in ("-wal", "-shm") if (data / f"uptend.db{s}").exists()
        ]
        assert journals  # the server runs SQLite in WAL mode: these exist while it runs
        assert {j.name: mode(j) for j in journals} == {j.name: 0o600 for j in journals}
        assert list((data / "uploads").iterdir()) == []


def _reads_as_nobody(path: Path) -> bool:
    done = subprocess.run(
        ["head", "-c1", str(path)],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
def test_another_user_cannot_read_the_database_or_the_keys(umask_zero: None) -> None:
    # Not under tmp_path: its parents are 0700 and would keep `nobody` out on their own.
    outer = Path(tempfile.mkdtemp(prefix="uptend-perm-"))
    try:
        outer.chmod(0o755)
        control = outer / "world-readable"
        control.write_text("x")
        control.chmod(0o644)
        assert _reads_as_nobody(control)  # the attack works where nothing protects a file

        data = existing_open_dir(outer / "srv")
        done = subprocess.run(
            [*UPTEND, "server", "init", str(data)], capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
        for secret in (data / "uptend.db", data / "server.json", data / "tuf/keys/root.pem"):
            assert not _reads_as_nobody(secret), secret
    finally:
        subprocess.run(["rm", "-rf", str(outer)], check=True)


def agent_tree(root: Path) -> dict[str, str]:
    """Mode of every directory and file under an agent's data dir, except the app's own.

    Left out: symlinks (`current`), each version's files (the release decides their modes)
    and what the app wrote into its state dir (its umask decides).
    """
    out = {".": oct(mode(root))}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        parts = rel.parts
        if path.is_symlink():
            continue
        if len(parts) > 3 and parts[0] == "apps" and parts[2] == "versions":
            continue
        if len(parts) > 3 and parts[0] == "apps" and parts[2] == "state":
            continue
        out[rel.as_posix()] = oct(mode(path))
    return out


def assert_agent_private(root: Path) -> None:
    tree = agent_tree(root)
    wrong = {p: m for p, m in tree.items() if m != ("0o700" if (root / p).is_dir() else "0o600")}
    assert wrong == {}, tree


def test_an_agent_keeps_its_data_dir_private_and_its_app_state_usable(
    tmp_path: Path, umask_zero: None
) -> None:
    with Fleet(tmp_path) as fleet:
        fleet.publish("demo", "1.0")
        fleet.assign("demo")
        existing_open_dir(fleet.root / "web-1")
        host = fleet.add_host("web-1")
        assert_agent_private(host.dir)
        assert {"agent.json", "state/trusted-root"} <= set(agent_tree(host.dir))

        done = subprocess.run(
            [*UPTEND, "agent", "run", str(host.dir), "--once"], capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert host.current("demo") == "1.0"
        assert_agent_private(host.dir)
        tree = agent_tree(host.dir)
        for written in ("state/demo.journal", "logs/agent.log", "apps/demo/logs/1.0.out"):
            assert tree[written] == "0o600", written
        assert any(p.startswith("logs/updates/demo-") for p in tree)

        # The app used its state dir, with the umask it was started with (the agent's).
        state = host.dir / "apps" / "demo" / "state"
        assert mode(state) == 0o700
        assert json.loads((state / "running.json").read_text())["version"] == "1.0"
        assert mode(state / "running.json") == 0o666  # umask 0: the agent imposed nothing

        # An older agent's 0755 dirs are tightened at the next start.
        for loose in (host.dir, host.dir / "state", host.dir / "logs"):
            loose.chmod(0o755)
        done = subprocess.run(
            [*UPTEND, "agent", "run", str(host.dir), "--once"], capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert_agent_private(host.dir)
