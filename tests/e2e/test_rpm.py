"""The rpm kind with real rpm against a private database: install, refuse, roll back (issue 13).

Every release is an .rpm built by the test with rpmbuild; the agent installs it with
`rpm -U` into a root and database the test made (`rpm_root`, `rpm_dbpath` in agent.json),
so the machine's own packages are never touched.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.debs import PACKAGE, HeldLock
from tests.support.fleet import Fleet, Host, wait_until
from tests.support.rpms import (
    DBPATH,
    build_rpm,
    private_rpm_root,
    publish_rpm,
    rpm_argv,
    rpm_host,
    rpm_query,
)


def _reports(fleet: Fleet, host: Host, version: str) -> list[dict[str, Any]]:
    shown = fleet.json("fleet", "show", host.name)
    return [r for r in shown["reports"] if r["version"] == version]


def _settled_on(host: Host, version: str) -> bool:
    plan = host.journal("demo")
    return bool(plan["phase"] == "idle" and plan["current"] == version)


def _attempt(host: Host, version: str) -> str:
    return max((host.dir / "logs/updates").glob(f"demo-*-{version}.log")).read_text()


def test_rpm_installs_refuses_and_rolls_back_with_real_rpm(fleet: Fleet, tmp_path: Path) -> None:
    root = private_rpm_root(tmp_path / "rpm-root")
    fleet.assign("demo")
    host = rpm_host(fleet, root)

    publish_rpm(fleet, root, "1.0", "1.0-1")
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", what="v1 running")
    assert rpm_query(root, PACKAGE) == "1.0-1"

    # another rpm holds the database's transaction lock: deferred, the old version runs on
    lock = HeldLock(root / DBPATH.lstrip("/") / ".rpm.lock")
    try:
        publish_rpm(fleet, root, "2.0", "2.0-1")
        wait_until(lambda: "deferred: the package manager is busy" in host.log_text(), what="defer")
        assert host.running_version("demo") == "1.0"
        assert rpm_query(root, PACKAGE) == "1.0-1"
        assert host.journal("demo")["phase"] == "activating"
    finally:
        lock.release()
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running")
    wait_until(lambda: _settled_on(host, "2.0"), what="v2 committed")
    assert rpm_query(root, PACKAGE) == "2.0-1"  # rpm installed the new package...
    assert (root / f"opt/{PACKAGE}/app.py").read_text().count("'2.0'") == 1  # ...its code runs
    kept = host.dir / "apps/demo/versions/2.0"
    assert sorted(p.name for p in kept.iterdir()) == ["package.rpm", "uptend.toml"]
    assert f"running rpm --root={root} --dbpath={DBPATH} -U " in _attempt(host, "2.0")
    assert "--oldpackage" not in _attempt(host, "2.0")  # an upgrade needs none

    # the kind and what rpm says are reported at each check-in: a package changed by hand shows
    def package() -> dict[str, Any] | None:
        return fleet.agent_app(host, "demo").get("package")

    expected = {"name": PACKAGE, "version": "2.0-1", "expected": "2.0-1", "drift": None}
    wait_until(lambda: package() == expected, what="the package in fleet list")
    assert fleet.agent_app(host, "demo")["kind"] == "rpm"
    by_hand = build_rpm(tmp_path / "by-hand", PACKAGE, "2.1-3", "2.1")
    subprocess.run(rpm_argv(root, "-U", str(by_hand)), check=True, capture_output=True)
    drift = "installed by hand: 2.1-3, expected 2.0-1"
    wait_until(lambda: (package() or {}).get("drift") == drift, what="drift shown")
    assert drift in json.dumps(fleet.json("fleet", "show", host.name))
    # (v3's rollback below puts 2.0-1 back: a downgrade from 2.1-3)

    # v3 needs a package nobody has: rpm -U refuses it; the agent puts v2's package back
    publish_rpm(fleet, root, "3.0", "3.0-1", requires="uptend-no-such-dependency")
    wait_until(lambda: len(_reports(fleet, host, "3.0")) == 1, what="v3's report")
    [report] = _reports(fleet, host, "3.0")
    assert report["outcome"] == "rolled_back"
    assert report["reason"].startswith("rpm -U 3.0 exited with code ")  # rpm says how many
    assert report["reason"].endswith(": error: Failed dependencies:")
    assert "uptend-no-such-dependency is needed by" in report["log_tail"]  # rpm's own words
    wait_until(lambda: _settled_on(host, "2.0"), what="back on v2")
    assert rpm_query(root, PACKAGE) == "2.0-1"
    assert host.running_version("demo") == "2.0"
    attempt = _attempt(host, "3.0")
    assert "rpm: error: Failed dependencies:" in attempt
    assert "-U --oldpackage" in attempt  # 2.0-1 went back over the hand-installed 2.1-3

    # another package under the app's name: refused before rpm runs
    publish_rpm(fleet, root, "3.5", "3.5-1", package="uptend-other")
    wait_until(lambda: len(_reports(fleet, host, "3.5")) == 1, what="3.5's report")
    [report] = _reports(fleet, host, "3.5")
    assert report["outcome"] == "failed"
    assert "refused: demo is package 'uptend-demo'" in report["reason"]
    assert rpm_query(root, "uptend-other") == ""
    assert "running rpm" not in _attempt(host, "3.5")
    assert "3.5" not in host.versions("demo")

    # v4 installs cleanly but crashes in probation: rolled back to v2's package
    publish_rpm(fleet, root, "4.0", "4.0-1", mode="crash", probation=3.0)
    wait_until(lambda: len(_reports(fleet, host, "4.0")) == 1, what="v4's report")
    [report] = _reports(fleet, host, "4.0")
    assert report["outcome"] == "rolled_back"
    assert "exited with code 3" in report["reason"]
    wait_until(lambda: _settled_on(host, "2.0"), what="back on v2 again")
    assert rpm_query(root, PACKAGE) == "2.0-1"
    assert "-U --oldpackage" in _attempt(host, "4.0")  # rpm -U --oldpackage of v2's file
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running again")
    assert host.journal("demo")["bad"] == ["3.0", "3.5", "4.0"]

    assert host.stop() == 0
