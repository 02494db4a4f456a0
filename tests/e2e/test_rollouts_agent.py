"""A real agent process in a staged rollout: its app crashes during soak, the rollout halts,
and the agent goes back to the version it ran before (still on disk: a switch)."""

from tests.support.fleet import Fleet, wait_until

APP = "demo"


def test_a_real_agent_goes_back_when_the_release_crashes_during_soak(fleet: Fleet) -> None:
    fleet.assign(APP, poll=1.0)
    fleet.publish(APP, "1.0")
    host = fleet.add_host()
    host.start()
    wait_until(lambda: host.running_version(APP) == "1.0", 60, "demo 1.0 running")
    wait_until(lambda: fleet.agent_app(host, APP).get("installed") == "1.0", 30, "reported")
    fleet.cli(
        "channel", "set", APP, "stable", "--waves", "100", "--soak", "300",
        "--max-failure-rate", "0", "--min-sample", "1", "--on-halt", "revert",
    )  # fmt: skip
    fleet.publish(APP, "2.0", mode="late-crash")  # healthy for 2 s: past its 0.5 s probation

    def state() -> str:
        return str(fleet.json("rollout", "status", APP)["state"])

    wait_until(lambda: state() == "halted", 90, "the rollout halts on the crash")
    status = fleet.json("rollout", "status", APP)
    assert status["waves"][0]["failed"] == 1
    assert "reported hosts failed" in status["reason"]
    wait_until(lambda: host.running_version(APP) == "1.0", 90, "back on 1.0")
    wait_until(lambda: fleet.agent_app(host, APP).get("installed") == "1.0", 30, "reported")
    # 1.0 is reported while the switch back is still on probation ("updating"): then settled
    wait_until(lambda: fleet.agent_app(host, APP)["reason"]["code"] != "updating", 30, "settled")
    assert fleet.agent_app(host, APP)["reason"]["code"] == "halted"
    assert host.current(APP) == "1.0"
    host.stop()
