"""`publish-agent` and `agent install` refuse what would not work, before any upload or build."""

import subprocess
from pathlib import Path

import pytest

from tests.support.fleet import UPTEND
from uptend.agent.selfupdate_env import wheel_version
from uptend.errors import ConfigError


def _uptend(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UPTEND, *args], capture_output=True, text=True, check=False)


def _wheelhouse(tmp_path: Path, *names: str) -> Path:
    wh = tmp_path / "wh"
    wh.mkdir()
    for name in names:
        (wh / name).write_bytes(b"")
    return wh


def test_the_wheelhouse_names_one_uptend_version(tmp_path: Path) -> None:
    wh = _wheelhouse(tmp_path, "uptend-0.2.0-py3-none-any.whl", "rich-13.0.0-py3-none-any.whl")
    assert wheel_version(wh) == "0.2.0"
    (wh / "uptend-0.3.0-py3-none-any.whl").write_bytes(b"")
    with pytest.raises(ConfigError, match="2 uptend wheels"):
        wheel_version(wh)


def test_publish_agent_refuses_a_version_that_is_not_the_wheels(tmp_path: Path) -> None:
    wh = _wheelhouse(tmp_path, "uptend-0.2.0-py3-none-any.whl")
    done = _uptend(
        *("release", "publish-agent", "0.3.0", str(wh)),
        *("--server", "http://127.0.0.1:9", "--token", "x"),
    )
    assert done.returncode == 2, done.stderr
    assert "holds uptend 0.2.0, not 0.3.0" in done.stderr


def test_publish_agent_refuses_a_wheelhouse_without_uptend(tmp_path: Path) -> None:
    wh = _wheelhouse(tmp_path, "rich-13.0.0-py3-none-any.whl")
    done = _uptend(
        *("release", "publish-agent", "0.2.0", str(wh)),
        *("--server", "http://127.0.0.1:9", "--token", "x"),
    )
    assert done.returncode == 2
    assert "0 uptend wheels" in done.stderr


def test_install_service_needs_an_installed_agent(tmp_path: Path) -> None:
    done = _uptend("agent", "install-service", str(tmp_path))
    assert done.returncode == 2
    assert "holds no installed agent" in done.stderr


def test_install_refuses_a_prefix_that_is_already_enrolled(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "agent.json").write_text("{}")
    done = _uptend(
        *("agent", "install", str(tmp_path), "--server", "http://127.0.0.1:9"),
        *("--token", "t", "--wheelhouse", str(tmp_path)),
    )
    assert done.returncode == 2
    assert "already holds an enrolled agent" in done.stderr


def test_install_refuses_a_bad_label_before_anything_is_built(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    done = _uptend(
        *("agent", "install", str(prefix), "--server", "http://127.0.0.1:9", "--token", "t"),
        *("--label", "zone=eu-1", "--label", "rack=has space"),
    )
    assert done.returncode == 2, done.stderr
    assert "invalid label 'rack=has space'" in done.stderr
    assert "KEY=VALUE" in done.stderr  # the hint says what a label is
    assert not prefix.exists()  # no environment, launcher or data dir half made
