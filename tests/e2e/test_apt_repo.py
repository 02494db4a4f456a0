"""Patchman's repository mode with real apt, dpkg and a signed repository on 127.0.0.1.

The server decides the version (the signed target is the release's uptend.toml: [deb] and
[apt]); the bytes come from an apt repository the test serves and signs with a key it made.
apt runs with private lists and cache and the one list file; dpkg with a private root.
"""

import json
from pathlib import Path
from typing import Any

from tests.support.aptrepo import AptRepo, Key
from tests.support.debs import PACKAGE, build_deb, manifest_for, private_root, query
from tests.support.fleet import Fleet, Host, wait_until

REPOSITORY = "uptend-test"


def _reports(fleet: Fleet, host: Host, version: str) -> list[dict[str, Any]]:
    shown = fleet.json("fleet", "show", host.name)
    return [r for r in shown["reports"] if r["version"] == version]


def _settled_on(host: Host, version: str) -> bool:
    plan = host.journal("demo")
    return bool(plan["phase"] == "idle" and plan["current"] == version)


def _publish(fleet: Fleet, root: Path, version: str, probation: float = 0.5) -> None:
    """An apt release: its uptend.toml alone, naming the package version and the repository."""
    where = fleet.root / "apt-releases" / version
    where.mkdir(parents=True)
    toml = where / "uptend.toml"
    toml.write_text(
        manifest_for(root, PACKAGE, probation)
        + f'\n[deb]\npackage = "{PACKAGE}"\nversion = "{version}-1"\n'
        + f'\n[apt]\nrepository = "{REPOSITORY}"\n'
    )
    fleet.cli("release", "publish", "demo", version, str(toml))


def test_apt_repository_mode_installs_what_the_server_decides_and_refuses_a_bad_signature(
    fleet: Fleet, tmp_path: Path
) -> None:
    root = private_root(tmp_path / "dpkg-root")
    key = Key(tmp_path, "repo")
    repo = AptRepo(tmp_path, key)
    try:
        for version, mode in (("1.0", "ok"), ("2.0", "ok"), ("3.0", "crash")):
            repo.add(build_deb(tmp_path / "debs", PACKAGE, f"{version}-1", version, mode=mode))
        sources, state = tmp_path / "sources", tmp_path / "apt-state"
        repo.list_file(sources, REPOSITORY)
        fleet.assign("demo")
        host = fleet.add_host()
        cfg = json.loads((host.dir / "agent.json").read_text())
        cfg |= {"dpkg_root": str(root), "apt_sources_dir": str(sources)}
        cfg["apt_state_dir"] = str(state)
        (host.dir / "agent.json").write_text(json.dumps(cfg))

        _publish(fleet, root, "1.0")
        host.start()
        wait_until(lambda: host.running_version("demo") == "1.0", what="v1 running")
        assert query(root, PACKAGE) == "1.0-1 ii"

        # the repository's candidate is 3.0-1; the server says 2.0: 2.0-1 is installed
        _publish(fleet, root, "2.0")
        wait_until(lambda: _settled_on(host, "2.0"), what="v2 committed")
        assert query(root, PACKAGE) == "2.0-1 ii"
        assert host.running_version("demo") == "2.0"
        assert (root / f"opt/{PACKAGE}/app.py").read_text().count("'2.0'") == 1
        kept = host.dir / "apps/demo/versions/2.0"
        assert sorted(p.name for p in kept.iterdir()) == ["package.deb", "uptend.toml"]
        assert (kept / "package.deb").read_bytes() == (
            repo.dir / f"{PACKAGE}_2.0-1_all.deb"
        ).read_bytes()
        lists = {p.name for p in (state / "state/lists").iterdir()} - {
            "lock",
            "partial",
            "auxfiles",
        }
        port = repo.url.split(":")[2].strip("/")
        assert {n.split(".lz4")[0] for n in lists} == {  # only this repository was refreshed
            f"127.0.0.1:{port}_._InRelease",
            f"127.0.0.1:{port}_._Packages",
        }

        def shown() -> tuple[str | None, dict[str, Any] | None]:
            app = fleet.agent_app(host, "demo")
            return app.get("kind"), app.get("package")

        package = {"name": PACKAGE, "version": "2.0-1", "expected": "2.0-1", "drift": None}
        wait_until(lambda: shown() == ("apt", package), what="the package in fleet list")

        # 3.0 comes from the repository too, crashes in probation: back to 2.0's kept file
        _publish(fleet, root, "3.0", probation=3.0)
        wait_until(lambda: len(_reports(fleet, host, "3.0")) == 1, what="v3's report")
        [report] = _reports(fleet, host, "3.0")
        assert report["outcome"] == "rolled_back"
        wait_until(lambda: _settled_on(host, "2.0"), what="back on v2")
        assert query(root, PACKAGE) == "2.0-1 ii"

        # the repository is now signed by a key the host does not trust: refused
        evil = Key(tmp_path, "evil")
        repo.add(build_deb(tmp_path / "debs", PACKAGE, "4.0-1", "4.0"), signer=evil)
        _publish(fleet, root, "4.0")
        wait_until(lambda: len(_reports(fleet, host, "4.0")) == 1, what="v4's report")
        [report] = _reports(fleet, host, "4.0")
        assert report["outcome"] == "failed"
        assert f"apt-get update of {REPOSITORY} failed" in report["reason"]
        assert "An error occurred during the signature verification" in report["reason"]
        assert "NO_PUBKEY" in report["reason"]
        assert "4.0" not in host.versions("demo")
        assert query(root, PACKAGE) == "2.0-1 ii"
        assert host.running_version("demo") == "2.0"
        assert host.stop() == 0
    finally:
        repo.close()
