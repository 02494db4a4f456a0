"""The launcher's choice (boot counter, fallback) and sd_notify, on real files and sockets.

The whole path (a real install, the launcher exec'ing real versions) is
tests/agent/test_self_update.py; these are the launcher's rules, each on its own.
"""

import os
import socket
import uuid
from pathlib import Path

import pytest

from uptend.agent import launcher, selfupdate


def _prefix(tmp_path: Path, *versions: str) -> Path:
    prefix = tmp_path / "prefix"
    for v in versions:
        (prefix / "versions" / v / "bin").mkdir(parents=True)
        (prefix / "versions" / v / "bin" / "python").write_text("")
    (prefix / "data" / "logs").mkdir(parents=True)
    return prefix


def _state(current: str, good: str, boots: int = 0) -> dict[str, object]:
    return {"current": current, "good": good, "boots": boots, "bad": {}, "fallback": None}


def test_a_confirmed_version_is_started_without_counting(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "1.0")
    state = _state("1.0", "1.0")
    for _ in range(5):
        assert launcher.choose(prefix, state) == "1.0"
    assert state["boots"] == 0


def test_an_unconfirmed_version_gets_max_boots_then_the_good_one_comes_back(
    tmp_path: Path,
) -> None:
    prefix = _prefix(tmp_path, "1.0", "2.0")
    (prefix / "data" / "logs" / "agent.log").write_text("boom: 2.0 died\n")
    state = _state("2.0", "1.0")
    for boot in range(1, launcher.MAX_BOOTS + 1):
        assert launcher.choose(prefix, state) == "2.0"
        assert state["boots"] == boot
        launcher.save(prefix, state)  # as main() does, durably, before the exec
        state = launcher.load(prefix)
    assert launcher.choose(prefix, state) == "1.0"
    assert state["current"] == "1.0"
    assert state["boots"] == 0
    assert state["bad"] == {"2.0": "agent 2.0 stopped 3 times before it checked in"}
    fallback = state["fallback"]
    assert isinstance(fallback, dict)
    assert fallback["version"] == "2.0"
    assert "boom: 2.0 died" in fallback["log_tail"]
    assert launcher.choose(prefix, state) == "1.0"  # and it stays there


def test_an_incomplete_new_version_falls_back_at_once(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "1.0")
    state = _state("2.0", "1.0")
    assert launcher.choose(prefix, state) == "1.0"
    assert state["bad"] == {"2.0": "agent 2.0 is incomplete on disk"}


def test_no_complete_version_is_an_error_not_a_guess(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path)
    with pytest.raises(SystemExit, match="no complete agent version"):
        launcher.choose(prefix, _state("1.0", "1.0"))


def test_a_damaged_state_file_reads_as_empty(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "1.0")
    launcher.state_path(prefix).parent.mkdir(parents=True)
    launcher.state_path(prefix).write_text("{not json")
    assert launcher.load(prefix)["current"] is None


def test_the_versions_on_disk_are_listed_with_their_state(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path, "1.0", "2.0", "3.0", "4.0")
    (prefix / "versions" / ".5.0.build").mkdir()
    state = _state("3.0", "2.0")
    state["bad"] = {"4.0": "failed its trial"}
    launcher.save(prefix, state)
    assert selfupdate.versions(prefix) == {
        "1.0": "old",
        "2.0": "good",
        "3.0": "trial",
        "4.0": "bad",
    }


def _receive(s: socket.socket) -> bytes:
    s.settimeout(5)
    return s.recv(4096)


def test_sd_notify_sends_a_datagram_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert selfupdate.notify("READY=1")
        assert _receive(s) == b"READY=1"


def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"uptend-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        host = selfupdate.SelfHost.__new__(selfupdate.SelfHost)
        host._pinged = 0.0
        host.ticked()
        assert _receive(s) == b"WATCHDOG=1"
        host.started()
        said = _receive(s).decode()
        assert said.startswith("READY=1\n")
        assert f"MAINPID={os.getpid()}" in said


def test_sd_notify_without_a_socket_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not selfupdate.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert not selfupdate.notify("READY=1")  # a service manager gone: the agent goes on


def test_the_launcher_imports_nothing_but_the_standard_library() -> None:
    import ast

    tree = ast.parse(Path(launcher.__file__).read_text())
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert names <= {"json", "os", "sys", "tempfile", "pathlib", "typing"}
