"""The server goes away in the middle of a rollout and comes back on the same port.

Promise 2 (docs/architecture.md): unreachable metadata never stops an agent or its apps, it
only holds back new installs. The agents keep their apps running on what they have, retry
with backoff, and finish the rollout once the server is back.
"""

from tests.agent.crash_support import (
    POLL_S,
    PROBATION_S,
    live_pid,
    wait_checkins,
    wait_settled,
)
from tests.support.fleet import Fleet, wait_until


def test_rollout_survives_a_server_restart_mid_way(fleet: Fleet) -> None:
    fleet.assign("demo", poll=POLL_S)
    fleet.publish("demo", "1.0", probation=PROBATION_S)
    hosts = [fleet.add_host() for _ in range(2)]
    for host in hosts:
        host.start()
    for host in hosts:
        wait_settled(host, "demo", "1.0")
    first_pids = {host.name: live_pid(host, "demo") for host in hosts}
    port = fleet.port

    fleet.publish("demo", "2.0", probation=PROBATION_S)
    fleet.stop_server()  # while the agents poll: some may have started on 2.0, most not
    failures_before = {host.name: host.log_text().count("check-in failed") for host in hosts}
    for host in hosts:
        wait_until(
            lambda h=host: h.log_text().count("check-in failed") > failures_before[h.name],  # type: ignore[misc]
            what=f"{host.name} failing to check in",
        )
    for host in hosts:  # cut off, every app keeps running; those not yet moved are untouched
        assert host.proc is not None
        assert host.proc.poll() is None, host.log_text()[-3000:]
        pid = live_pid(host, "demo")
        assert pid is not None
        if host.running_version("demo") == "1.0":  # the very process from before the outage
            assert pid == first_pids[host.name]
        else:
            assert host.running_version("demo") == "2.0"

    fleet.start_server(port=port)
    assert fleet.port == port
    for host in hosts:
        wait_settled(host, "demo", "2.0")
    for host in hosts:
        wait_checkins(fleet, host, 2)  # check-ins resumed

    def everyone_on_2() -> bool:
        return all(
            a["apps"][0]["installed"] == "2.0" and a["apps"][0]["state"] == "running"
            for a in fleet.agents()
        )

    wait_until(everyone_on_2, what="server sees 2.0 everywhere")
