"""Operator commands on the server, over real HTTP on SQLite and PostgreSQL.

Stored, handed out at check-in until acknowledged, never handed out past expiry, listed with
who sent them; and the long-poll (`/wait`) rings at once for a command or a new generation
and otherwise answers at its bound, from a held request (futures, not threads).
"""

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.test_agent_api import admin_client, check_in, enrolled, fleet_on, running
from tests.server.test_checkin import answer, group_with_release, stats
from tests.support.fleet import Fleet, wait_until


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet_on(request.param, tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


def send(fleet: Fleet, **body: Any) -> list[dict[str, Any]]:
    with admin_client(fleet) as http:
        response = http.post("/api/v1/commands", json=body)
    assert response.status_code == 201, response.text
    sent: list[dict[str, Any]] = response.json()
    return sent


def listed(fleet: Fleet, **params: Any) -> list[dict[str, Any]]:
    with admin_client(fleet) as http:
        response = http.get("/api/v1/commands", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def wait(fleet: Fleet, credential: str, generation: int | None, wait_s: float) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"}
    body = {"generation": generation, "wait_s": wait_s}
    return httpx.post(f"{fleet.url}/api/v1/wait", json=body, headers=headers, timeout=90)


def settled(fleet: Fleet, name: str, group: str) -> tuple[str, int, list[dict[str, Any]]]:
    """An enrolled agent that has checked in once: its credential, generation and state."""
    credential = enrolled(fleet, name, group=group)
    state = [running(f"{group}-app", "1.0")]
    first = answer(check_in(fleet, credential, state))
    return credential, first["generation"], state


def test_a_command_is_handed_out_until_acknowledged_then_listed_as_done(server: Fleet) -> None:
    group_with_release(server, "cmd", "cmd-app")
    credential, generation, state = settled(server, "cmd-1", "cmd")
    [sent] = send(server, action="restart", agent="cmd-1", app="cmd-app")
    assert (sent["state"], sent["agent"], sent["sent_by"]) == ("pending", "cmd-1", "admin#1")

    for _ in range(2):  # a lost answer: the next check-in gets it again
        got = answer(check_in(server, credential, state, generation=generation))
        assert got["unchanged"] is True  # directives still hold: only the command rides along
        assert [(c["id"], c["action"], c["app"]) for c in got["commands"]] == [
            (sent["id"], "restart", "cmd-app")
        ]
    ack = {"id": sent["id"], "state": "done", "result": "restart: cmd-app"}
    got = answer(check_in(server, credential, state, generation=generation, acks=[ack]))
    assert got["commands"] == []
    [row] = listed(server, agent="cmd-1")
    assert (row["state"], row["result"]) == ("done", "restart: cmd-app")
    assert row["acked_at"] is not None
    assert listed(server, agent="cmd-1", state="pending") == []
    # The ack of a command already done changes nothing (it is sent again after a lost answer)
    again = {**ack, "state": "failed", "result": "x"}
    answer(check_in(server, credential, state, generation=generation, acks=[again]))
    assert listed(server, agent="cmd-1")[0]["state"] == "done"
    with admin_client(server) as http:
        audit = http.get("/api/v1/server/stats")  # the admin API still answers after all that
    assert audit.status_code == 200


def test_an_agent_cannot_acknowledge_another_agents_command(server: Fleet) -> None:
    group_with_release(server, "own", "own-app")
    _, _, _ = settled(server, "own-1", "own")
    other, generation, state = settled(server, "own-2", "own")
    [sent] = send(server, action="stop", agent="own-1")
    forged = {"id": sent["id"], "state": "done", "result": "forged"}
    answer(check_in(server, other, state, generation=generation, acks=[forged]))
    assert listed(server, agent="own-1")[0]["state"] == "pending"


def test_an_expired_command_is_never_handed_out_and_shows_as_expired(server: Fleet) -> None:
    group_with_release(server, "exp", "exp-app")
    credential, generation, state = settled(server, "exp-1", "exp")
    [sent] = send(server, action="stop", agent="exp-1", expires_s=0.5)
    wait_until(lambda: listed(server, agent="exp-1", state="expired") != [], what="expired")
    got = answer(check_in(server, credential, state, generation=generation))
    assert got["commands"] == []
    [row] = listed(server, agent="exp-1")
    assert (row["id"], row["state"]) == (sent["id"], "expired")


def test_a_group_command_reaches_every_agent_of_the_group(server: Fleet) -> None:
    group_with_release(server, "many", "many-app")
    creds = [settled(server, f"many-{i}", "many") for i in range(3)]
    sent = send(server, action="check-now", group="many")
    assert sorted(c["agent"] for c in sent) == ["many-0", "many-1", "many-2"]
    for credential, generation, state in creds:
        got = answer(check_in(server, credential, state, generation=generation))
        assert [c["action"] for c in got["commands"]] == ["check-now"]


def test_a_label_command_reaches_every_agent_with_the_label(server: Fleet) -> None:
    group_with_release(server, "lab", "lab-app")
    creds = [settled(server, f"lab-{i}", "lab") for i in range(3)]
    with admin_client(server) as http:
        for name in ("lab-0", "lab-2"):
            labelled = http.post(f"/api/v1/agents/{name}/labels", json={"labels": ["zone=eu-1"]})
            assert labelled.status_code == 200, labelled.text
        refused = http.post("/api/v1/commands", json={"action": "stop", "label": "zone=nowhere"})
        assert refused.status_code == 404
        both = {"action": "stop", "label": "zone=eu-1", "group": "lab"}
        assert http.post("/api/v1/commands", json=both).status_code == 422
    sent = send(server, action="check-now", label="zone=eu-1")
    assert sorted(c["agent"] for c in sent) == ["lab-0", "lab-2"]
    for i, (credential, generation, state) in enumerate(creds):
        got = answer(check_in(server, credential, state, generation=generation))
        assert [c["action"] for c in got["commands"]] == (["check-now"] if i != 1 else [])


def test_unknown_agents_and_groups_are_refused(server: Fleet) -> None:
    with admin_client(server) as http:
        assert (
            http.post("/api/v1/commands", json={"action": "stop", "agent": "nobody"}).status_code
            == 404
        )
        assert (
            http.post("/api/v1/commands", json={"action": "stop", "group": "nogroup"}).status_code
            == 404
        )
        both = {"action": "stop", "agent": "a", "group": "g"}
        assert http.post("/api/v1/commands", json=both).status_code == 422
        assert (
            http.post("/api/v1/commands", json={"action": "reboot", "agent": "a"}).status_code
            == 422
        )


def test_the_long_poll_rings_at_once_for_a_command_and_is_quiet_otherwise(server: Fleet) -> None:
    group_with_release(server, "lp", "lp-app")
    credential, generation, _ = settled(server, "lp-1", "lp")
    quiet = answer(wait(server, credential, generation, 0.3))
    assert quiet == {"ring": False}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(wait, server, credential, generation, 50.0)
        wait_until(lambda: stats(server.url, server.admin_token)["held_long_polls"] >= 1)
        sent_at = time.monotonic()
        send(server, action="check-now", agent="lp-1")
        rang = answer(held.result(timeout=40))
        took = time.monotonic() - sent_at
    assert rang == {"ring": True}
    assert took < 2.0, f"the held long-poll answered {took:.2f}s after the command"
    # Pending: a new long-poll rings at once until a check-in acknowledges it
    assert answer(wait(server, credential, generation, 10.0)) == {"ring": True}


def test_the_long_poll_rings_when_the_generation_moves(server: Fleet) -> None:
    group_with_release(server, "lg", "lg-app")
    credential, generation, _ = settled(server, "lg-1", "lg")
    assert answer(wait(server, credential, generation - 1, 10.0)) == {"ring": True}  # stale
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(wait, server, credential, generation, 50.0)
        wait_until(lambda: stats(server.url, server.admin_token)["held_long_polls"] >= 1)
        with admin_client(server) as http:  # an operator change: the generation moves
            changed = http.put("/api/v1/groups/lg", json={"poll_interval_s": 61})
        assert changed.status_code == 200, changed.text
        assert answer(held.result(timeout=40)) == {"ring": True}


def test_an_idle_check_in_reads_no_commands(server: Fleet) -> None:
    """The idle path stays as it was: a set lookup, no statement for commands."""
    group_with_release(server, "idle-c", "idle-c-app")
    credential, generation, state = settled(server, "idle-c-1", "idle-c")
    before = stats(server.url, server.admin_token)
    for _ in range(5):
        assert answer(check_in(server, credential, state, generation=generation))["unchanged"]
    after = stats(server.url, server.admin_token)
    # the stats call itself and the 5 generation reads; nothing per check-in beyond that
    assert after["statements"]["write"] == before["statements"]["write"]
