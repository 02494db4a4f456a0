"""The whole path with real processes: publish, agents install, run, and move to v2."""

from tests.support.fleet import Fleet, wait_until


def test_v1_to_v2_runs_the_new_code_on_every_host(any_db_fleet: Fleet) -> None:
    fleet = any_db_fleet
    fleet.assign("demo")
    fleet.publish("demo", "1.0")
    hosts = [fleet.add_host() for _ in range(2)]
    for host in hosts:
        host.start()
    for host in hosts:
        wait_until(lambda h=host: h.running_version("demo") == "1.0", what="v1 running")  # type: ignore[misc]

    fleet.publish("demo", "2.0")
    for host in hosts:
        wait_until(lambda h=host: h.running_version("demo") == "2.0", what="v2 running")  # type: ignore[misc]
        seen = host.app_says("demo")
        assert seen is not None
        env = seen["env"]
        assert env["UPTEND_APP"] == "demo"
        assert env["UPTEND_VERSION"] == "2.0"
        assert env["UPTEND_STATE_DIR"] == str(host.dir / "apps/demo/state")
        assert env["UPTEND_CONFIG_FILE"] == str(host.dir / "apps/demo/config.json")
        assert seen["cwd"] == str(host.dir / "apps/demo/versions/2.0")
        assert host.current("demo") == "2.0"
        # versions/ holds exactly the release's files: bookkeeping lives beside it
        assert sorted(p.name for p in (host.dir / "apps/demo/versions/2.0").iterdir()) == [
            "app.py",
            "uptend.toml",
        ]

    def all_reported() -> bool:
        agents = fleet.agents()
        return all(
            a["apps"][0]["installed"] == "2.0" and a["apps"][0]["state"] == "running"
            for a in agents
        )

    wait_until(all_reported, what="server sees v2 everywhere")
    assert fleet.json("fleet", "list", "--outdated")["agents"] == []
    for host in hosts:
        assert host.stop() == 0
        assert host.running_version("demo") is None  # SIGTERM stopped the app too
