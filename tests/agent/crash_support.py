"""Helpers for the crash-safety, rollback and server-restart tests.

They look at a host the way an operator would after a power cut: what is in `versions/`,
where `current` points, which app processes really run (read from /proc, not from the
agent's own records, which is what a crash could leave wrong).
"""

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.support.fleet import Fleet, Host, wait_until

RELEASE_FILES = ["app.py", "uptend.toml"]  # what make_release puts in every release
PROBATION_S = 0.3
POLL_S = 1.0


def bring_up(
    fleet: Fleet,
    *,
    app: str = "demo",
    group: str = "default",
    version: str = "1.0",
    **release: Any,
) -> Host:
    """Assign `app` to `group`, publish `version`, and return a host that runs it."""
    fleet.assign(app, group=group, poll=POLL_S)
    release.setdefault("probation", PROBATION_S)
    fleet.publish(app, version, **release)
    host = fleet.add_host(group=group)
    host.start()
    wait_until(lambda: settled_on(host, app, version), what=f"{app} {version} running")
    return host


def app_pids(host: Host, app: str) -> list[int]:
    """Pids of every live `app.py` process running from this host's versions of `app`."""
    versions = str((host.dir / "apps" / app / "versions").resolve())
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":  # exited, not yet reaped by its parent: not running
            continue
        if cwd.startswith(versions + "/") and any(c.endswith(b"app.py") for c in cmdline):
            found.append(int(entry.name))
    return sorted(found)


def live_pid(host: Host, app: str) -> int | None:
    """The pid the app itself reports, if that process is alive."""
    seen = host.app_says(app)
    if seen is None:
        return None
    pid = int(seen["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def phase(host: Host, app: str) -> str:
    return str(host.journal(app)["phase"])


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def supervised_by(host: Host, app: str, pid: int) -> bool:
    """`pid` is the app process of `host`'s running agent: its child, or one it adopted from
    a killed agent (then run.json names both: an agent writes its own pid there on adoption)."""
    if host.proc is None:
        return False
    if parent_pid(pid) == host.proc.pid:
        return True
    try:
        record = json.loads((host.dir / "apps" / app / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(record.get("pid") == pid and record.get("agent") == host.proc.pid)


def running(pid: int) -> bool:
    """A live process has `pid` (a zombie nobody reaped is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat: when it started, in clock ticks since boot."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def settled_on(host: Host, app: str, version: str) -> bool:
    """The host runs `version` of `app` in exactly one process, supervised by its running
    agent (its child, or adopted: not an orphan nobody watches), and has nothing in flight."""
    pid = live_pid(host, app)
    return (
        pid is not None
        and host.running_version(app) == version
        and supervised_by(host, app, pid)
        and phase(host, app) == "idle"
        and not host.staging(app)
        and app_pids(host, app) == [pid]
    )


def wait_settled(host: Host, app: str, version: str, timeout_s: float = 30.0) -> None:
    def done() -> bool:
        return settled_on(host, app, version)

    try:
        wait_until(done, timeout_s=timeout_s, what=f"{host.name} settled on {app} {version}")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{describe(host, app)}") from None


def assert_whole(host: Host, app: str, allowed: set[str]) -> None:
    """Every dir in versions/ is a complete release and `current` points at one of them."""
    versions = host.dir / "apps" / app / "versions"
    for d in versions.iterdir():
        assert d.is_dir(), f"{d} is not a directory"
        assert not d.is_symlink(), f"{d} is a symlink"
        assert sorted(p.name for p in d.iterdir()) == RELEASE_FILES, f"{d} is not complete"
    current = host.current(app)
    assert current in allowed, f"current -> {current}, expected one of {sorted(allowed)}"
    assert (versions / current).is_dir(), f"current -> {current}, which is not in versions/"


def agent_died_of_sigkill(host: Host, timeout_s: float = 60.0) -> int:
    assert host.proc is not None
    code = host.proc.wait(timeout=timeout_s)
    assert code == -signal.SIGKILL, f"agent exited {code}\n{host.log_text()[-3000:]}"
    return code


def attempt_logs(host: Host, app: str, version: str) -> list[Path]:
    return sorted((host.dir / "logs" / "updates").glob(f"{app}-*-{version}.log"))


def admin_get(fleet: Fleet, path: str) -> Any:
    """GET the admin API straight (no CLI process: cheap enough to poll)."""
    response = httpx.get(
        f"{fleet.url}/api/v1/{path.lstrip('/')}",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
        timeout=30.0,
    )
    response.raise_for_status()
    return response.json()


def last_seen(fleet: Fleet, host: Host) -> str:
    agent: dict[str, Any] = admin_get(fleet, f"agents/{host.name}")["agent"]
    return str(agent["last_seen"] or "")


def wait_checkins(fleet: Fleet, host: Host, count: int, timeout_s: float = 30.0) -> None:
    """Wait until the server has seen `count` more check-ins of `host` (last_seen moved)."""
    seen = {last_seen(fleet, host)}

    def moved() -> bool:
        seen.add(last_seen(fleet, host))
        return len(seen) > count

    wait_until(moved, timeout_s=timeout_s, what=f"{count} check-ins of {host.name}")


def reports(fleet: Fleet, host: Host) -> list[dict[str, Any]]:
    """The host's latest reports as `fleet show` gets them, newest first."""
    found: list[dict[str, Any]] = admin_get(fleet, f"agents/{host.name}")["reports"]
    return found


def kill_app_processes(host: Host, app: str) -> None:
    """Last-resort cleanup: SIGKILL whatever still runs from this host's versions of `app`."""
    for pid in app_pids(host, app):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def describe(host: Host, app: str) -> str:
    """What a failing assertion should show: the disk, the processes and the agent's log."""
    app_dir = host.dir / "apps" / app
    try:
        journal = json.dumps(host.journal(app))
    except (OSError, ValueError, KeyError) as e:
        journal = f"unreadable: {e}"
    return "\n".join(
        [
            f"current -> {host.current(app)}",
            f"versions: {host.versions(app)}",
            f"staging: {host.staging(app)}",
            f"journal: {journal}",
            f"app says: {host.app_says(app)}",
            f"app pids: {app_pids(host, app)}",
            f"agent pid: {host.proc.pid if host.proc else None}",
            f"run.json: {_read(app_dir / 'run.json')}",
            "agent log tail:",
            host.log_text()[-3000:],
        ]
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        return f"({e.strerror})"
