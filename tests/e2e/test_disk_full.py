"""A full disk (docs/faults.md F40): deferred when foreseen, cleaned up when it strikes.

The agent runs inside `unshare --user --mount` with a 1 MiB tmpfs over `apps/demo`, so even
root hits a real ENOSPC. What the agent sees is read through /proc/<pid>/root, which
resolves paths in the agent's own mount namespace.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import userns
from tests.e2e.test_hostile import APP, PROBATION, app_row, host_on_1_0, reports
from tests.support.fleet import UPTEND, Fleet, Host, make_release, wait_until

TMPFS = "1m"


def _can_mount_tmpfs(where: Path) -> bool:
    where.mkdir()
    return userns.allows(f'mount -t tmpfs -o size=64k tmpfs "{where}"')


def start_on_small_disk(host: Host, copy: Path) -> None:
    """Run the agent with apps/demo (1.0 and all) on a 1 MiB tmpfs of its own."""
    app_dir = host.dir / "apps" / APP
    script = (
        f'cp -a "{app_dir}/." "{copy}/" && mount -t tmpfs -o size={TMPFS} tmpfs "{app_dir}" '
        f'&& cp -a "{copy}/." "{app_dir}/" && exec "$@"'
    )
    out = host.log.open("ab")
    host.proc = subprocess.Popen(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            *UPTEND,
            "agent",
            "run",
            str(host.dir),
        ],
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
    )
    out.close()


def seen_by_agent(host: Host, path: Path) -> Path:
    assert host.proc is not None
    return Path(f"/proc/{host.proc.pid}/root") / path.relative_to("/")


@pytest.mark.parametrize("check_disk", [True, False], ids=["foreseen", "struck"])
def test_full_disk_keeps_the_old_version_running(
    fleet: Fleet, tmp_path: Path, check_disk: bool
) -> None:
    if not _can_mount_tmpfs(tmp_path / "probe"):
        pytest.skip("needs `unshare --user --mount` to mount a small tmpfs")
    host = host_on_1_0(fleet, check_disk=check_disk)
    assert host.stop() == 0
    release = make_release(fleet.root / "releases", "2.0", probation=PROBATION)
    (release / "blob.bin").write_bytes(os.urandom(3 << 20))  # 3 MiB that do not compress
    fleet.cli("release", "publish", APP, "2.0", str(release))
    copy = tmp_path / "copy"
    copy.mkdir()
    start_on_small_disk(host, copy)

    if check_disk:
        wait_until(lambda: app_row(fleet, host)["state"] == "deferred", what="deferred")
        assert "not enough disk space" in app_row(fleet, host)["reason"]["message"]
        assert reports(fleet, host, "2.0", "failed") == []
    else:
        wait_until(lambda: reports(fleet, host, "2.0", "failed") != [], what="a failure")
        assert "disk full" in reports(fleet, host, "2.0", "failed")[0]["reason"]
    app_dir = seen_by_agent(host, host.dir / "apps" / APP)
    assert sorted(p.name for p in (app_dir / "versions").iterdir()) == ["1.0"]
    assert list((app_dir / "staging").iterdir()) == []
    assert (app_dir / "current").readlink() == Path("versions/1.0")
    running = json.loads((app_dir / "state" / "running.json").read_text())
    assert running["version"] == "1.0"
    os.kill(running["pid"], 0)  # alive: the app the stopped agent ran was stopped with it
    assert host.proc is not None
    assert host.proc.poll() is None
    assert host.stop() == 0
