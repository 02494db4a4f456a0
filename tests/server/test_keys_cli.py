"""`uptend keys` on a server data dir: what it prints, and the errors an operator can hit."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import UPTEND


def uptend(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UPTEND, *args], capture_output=True, text=True, check=False)


def json_of(*args: str) -> Any:
    done = uptend(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "srv"
    assert uptend("server", "init", str(path), "--json").returncode == 0
    return path


def test_show_lists_each_key_and_its_expiry(data_dir: Path) -> None:
    shown = json_of("keys", "show", str(data_dir))
    assert shown["offline"] is False
    assert shown["retired"] == []
    by_key = {k["key"]: k for k in shown["keys"]}
    assert list(by_key) == ["root", "targets", "snapshot", "timestamp"]  # no app role yet
    for k in by_key.values():
        assert k["where"] == "server"
        assert k["version"] == 1
        assert len(k["keyids"]) == 1
        assert k["warning"] is None
    table = uptend("keys", "show", str(data_dir))
    assert "signing mode: online" in table.stdout


def test_mistakes_name_the_thing_and_the_fix(tmp_path: Path, data_dir: Path) -> None:
    done = uptend("keys", "rotate", "master", str(data_dir))
    assert done.returncode == 2
    assert "no TUF key is called 'master'" in done.stderr
    done = uptend("keys", "show", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "server init" in done.stderr
    assert "Traceback" not in done.stderr


def test_offline_mode_needs_the_keys_for_ceremonies(tmp_path: Path) -> None:
    srv, usb = tmp_path / "srv", tmp_path / "usb"
    assert uptend("server", "init", str(srv)).returncode == 0
    assert uptend("keys", "export-targets", str(srv), str(usb)).returncode == 0
    assert sorted(p.name for p in usb.iterdir()) == ["releases.pem", "root.pem", "targets.pem"]
    assert (usb.stat().st_mode & 0o777, (usb / "root.pem").stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    again = uptend("keys", "export-targets", str(srv), str(tmp_path / "other"))
    assert again.returncode == 2
    assert "exported already" in again.stderr
    done = uptend("keys", "rotate", "timestamp", str(srv))
    assert done.returncode == 2
    assert "root key is not on this server" in done.stderr
    assert "--keys DIR" in done.stderr
    rotated = json_of("keys", "rotate", "timestamp", str(srv), "--keys", str(usb))
    assert rotated["root_version"] == 2
    shown = json_of("keys", "show", str(srv))
    assert shown["offline"] is True
    assert {k["key"]: k["where"] for k in shown["keys"]}["root"] == "missing"
    with_usb = json_of("keys", "show", str(srv), "--keys", str(usb))
    assert {k["key"]: k["where"] for k in with_usb["keys"]}["root"] == "offline"
    assert json_of("keys", "renew", str(srv), "--keys", str(usb)) == {"resigned": False}
