"""The deb kind with real dpkg against a private root: install, refuse, roll back (issue 13).

Every release is a .deb built by the test with dpkg-deb; the agent installs it with
`dpkg -i` into a dpkg root the test made (`dpkg_root` in agent.json), so the machine's own
packages are never touched.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.debs import (
    PACKAGE,
    HeldLock,
    build_deb,
    deb_host,
    private_root,
    publish_deb,
    query,
)
from tests.support.fleet import Fleet, Host, wait_until


def _reports(fleet: Fleet, host: Host, version: str) -> list[dict[str, Any]]:
    shown = fleet.json("fleet", "show", host.name)
    return [r for r in shown["reports"] if r["version"] == version]


def _settled_on(host: Host, version: str) -> bool:
    plan = host.journal("demo")
    return bool(plan["phase"] == "idle" and plan["current"] == version)


def test_deb_installs_refuses_and_rolls_back_with_real_dpkg(fleet: Fleet, tmp_path: Path) -> None:
    root = private_root(tmp_path / "dpkg-root")
    fleet.assign("demo")
    host = deb_host(fleet, root)

    publish_deb(fleet, root, "1.0", "1.0-1")
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", what="v1 running")
    assert query(root, PACKAGE) == "1.0-1 ii"

    # another package manager holds dpkg's lock: deferred, the old version keeps running
    lock = HeldLock(root / "var/lib/dpkg/lock-frontend")
    try:
        publish_deb(fleet, root, "2.0", "2.0-1")
        wait_until(lambda: "deferred: the package manager is busy" in host.log_text(), what="defer")
        assert host.running_version("demo") == "1.0"
        assert query(root, PACKAGE) == "1.0-1 ii"
        assert host.journal("demo")["phase"] == "activating"
    finally:
        lock.release()
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running")
    wait_until(lambda: _settled_on(host, "2.0"), what="v2 committed")
    assert query(root, PACKAGE) == "2.0-1 ii"  # dpkg installed the new package...
    assert (root / f"opt/{PACKAGE}/app.py").read_text().count("'2.0'") == 1  # ...its code runs
    kept = host.dir / "apps/demo/versions/2.0"
    assert sorted(p.name for p in kept.iterdir()) == ["package.deb", "uptend.toml"]

    # what dpkg says is reported at each check-in: a package changed by hand shows
    def says() -> str:
        return str(fleet.agent_app(host, "demo").get("reason", {}).get("message"))

    wait_until(lambda: says() == f"deb {PACKAGE} 2.0-1", what="the package in fleet list")
    by_hand = build_deb(tmp_path / "by-hand", PACKAGE, "2.1-3", "2.1")
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-script-chrootless", "-i", str(by_hand)],
        check=True,
        capture_output=True,
    )
    wait_until(lambda: says() == "installed by hand: 2.1-3, expected 2.0-1", what="drift shown")
    shown = fleet.json("fleet", "show", host.name)
    assert "installed by hand: 2.1-3, expected 2.0-1" in json.dumps(shown)
    # (v3's rollback below puts 2.0-1 back)

    # v3 needs a package nobody has: dpkg -i refuses it; the agent puts v2's package back
    publish_deb(fleet, root, "3.0", "3.0-1", depends="uptend-no-such-dependency")
    wait_until(lambda: len(_reports(fleet, host, "3.0")) == 1, what="v3's report")
    [report] = _reports(fleet, host, "3.0")
    assert report["outcome"] == "rolled_back"
    assert "dpkg -i 3.0 exited with code 1" in report["reason"]
    assert "uptend-no-such-dependency" in report["log_tail"]  # dpkg's own words
    wait_until(lambda: _settled_on(host, "2.0"), what="back on v2")
    assert query(root, PACKAGE) == "2.0-1 ii"
    assert host.running_version("demo") == "2.0"
    attempt = max((host.dir / "logs/updates").glob("demo-*-3.0.log"))
    assert "dpkg: dpkg: dependency problems prevent configuration" in attempt.read_text()

    # another package under the app's name: refused before dpkg runs
    publish_deb(fleet, root, "3.5", "3.5-1", package="uptend-other")
    wait_until(lambda: len(_reports(fleet, host, "3.5")) == 1, what="3.5's report")
    [report] = _reports(fleet, host, "3.5")
    assert report["outcome"] == "failed"
    assert "refused: demo is package 'uptend-demo'" in report["reason"]
    assert query(root, "uptend-other") == ""
    attempt = max((host.dir / "logs/updates").glob("demo-*-3.5.log"))
    assert "running dpkg" not in attempt.read_text()
    assert "3.5" not in host.versions("demo")

    # v4 installs cleanly but crashes in probation: rolled back to v2's package
    publish_deb(fleet, root, "4.0", "4.0-1", mode="crash", probation=3.0)
    wait_until(lambda: len(_reports(fleet, host, "4.0")) == 1, what="v4's report")
    [report] = _reports(fleet, host, "4.0")
    assert report["outcome"] == "rolled_back"
    assert "exited with code 3" in report["reason"]
    wait_until(lambda: _settled_on(host, "2.0"), what="back on v2 again")
    assert query(root, PACKAGE) == "2.0-1 ii"
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running again")
    assert host.journal("demo")["bad"] == ["3.0", "3.5", "4.0"]

    assert host.stop() == 0
