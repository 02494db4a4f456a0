"""The deb kind with real dpkg against a private root: install, refuse, roll back (issue 13).

Every release is a .deb built by the test with dpkg-deb; the agent installs it with
`dpkg -i` into a dpkg root the test made (`dpkg_root` in agent.json), so the machine's own
packages are never touched.
"""

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.server.test_admin_cli import wide
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

    # the kind and what dpkg says are reported at each check-in: a package changed by hand shows
    def package() -> dict[str, Any] | None:
        return fleet.agent_app(host, "demo").get("package")

    expected = {"name": PACKAGE, "version": "2.0-1", "expected": "2.0-1", "drift": None}
    wait_until(lambda: package() == expected, what="the package in fleet list")
    [shown] = fleet.json("fleet", "show", host.name)["agent"]["apps"]
    assert (shown["kind"], shown["package"]) == ("deb", expected)
    assert f"deb {PACKAGE} 2.0-1" in wide(fleet, "fleet", "show", host.name)
    by_hand = build_deb(tmp_path / "by-hand", PACKAGE, "2.1-3", "2.1")
    subprocess.run(
        ["dpkg", f"--root={root}", "--force-script-chrootless", "-i", str(by_hand)],
        check=True,
        capture_output=True,
    )
    drift = "installed by hand: 2.1-3, expected 2.0-1"
    wait_until(lambda: (package() or {}).get("drift") == drift, what="drift shown")
    [shown] = fleet.json("fleet", "show", host.name)["agent"]["apps"]
    assert (shown["kind"], shown["package"]["version"]) == ("deb", "2.1-3")  # as dpkg has it
    assert f"deb {PACKAGE}: {drift}" in wide(fleet, "fleet", "list")
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


def test_a_slow_dpkg_holds_up_neither_check_ins_nor_commands(fleet: Fleet, tmp_path: Path) -> None:
    """dpkg runs in the worker child: while v2's postinst blocks, the agent's loop goes on."""
    root = private_root(tmp_path / "dpkg-root")
    fleet.assign("demo")
    host = deb_host(fleet, root)
    publish_deb(fleet, root, "1.0", "1.0-1")
    host.start()
    wait_until(lambda: host.running_version("demo") == "1.0", what="v1 running")
    wait_until(lambda: _settled_on(host, "1.0"), what="v1 committed")
    started, release = tmp_path / "postinst-started", tmp_path / "postinst-release"
    postinst = f"#!/bin/sh\ntouch {started}\nwhile [ ! -e {release} ]; do sleep 0.1; done\n"
    publish_deb(fleet, root, "2.0", "2.0-1", postinst=postinst)
    try:
        wait_until(started.exists, timeout_s=60, what="dpkg -i of v2 in its postinst")
        [sent] = json.loads(fleet.cli("command", "send", host.name, "check-now", "--json").stdout)

        def answered() -> bool:
            return any(
                c["id"] == sent["id"] and c["state"] == "done"
                for c in fleet.json("command", "list")
            )

        wait_until(answered, what="check-now carried out while dpkg still runs")
        assert not release.exists()  # (only this test ends the postinst)
        assert host.journal("demo")["phase"] == "activating"
        app = fleet.agent_app(host, "demo")  # the check-in that acked it said where it is
        assert (app["state"], app["reason"]["code"]) == ("updating", "updating")
        assert app["reason"].get("phase") == "activating 2.0"
    finally:
        release.touch()
    wait_until(lambda: _settled_on(host, "2.0"), what="v2 committed")
    assert query(root, PACKAGE) == "2.0-1 ii"
    wait_until(lambda: host.running_version("demo") == "2.0", what="v2 running")
    assert host.stop() == 0
