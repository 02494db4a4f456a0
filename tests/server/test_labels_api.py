"""Agent labels over real HTTP, on SQLite and PostgreSQL: enrollment, change, view, filter."""

import httpx
import pytest

from tests.server.test_agent_api import admin_client
from tests.support.fleet import Fleet
from uptend.server.storage.db import sqlite_url


def enroll(fleet: Fleet, name: str, labels: list[str]) -> httpx.Response:
    body = {"token": fleet.enroll_token, "name": name, "labels": labels}
    return httpx.post(f"{fleet.url}/api/v1/enroll", json=body, timeout=30)


def names(fleet: Fleet, *labels: str) -> list[str]:
    args = [a for label in labels for a in ("--label", label)]
    page = fleet.json("fleet", "list", "--limit", "1000", *args)
    return [a["name"] for a in page["agents"]]


def test_labels_given_at_enrollment_are_shown_changed_and_filtered(server: Fleet) -> None:
    for name, labels in [
        ("lab-1", ["zone=eu-1", "rack=r1"]),
        ("lab-2", ["zone=eu-1", "rack=r2"]),
        ("lab-3", ["zone=us-1"]),
    ]:
        assert enroll(server, name, labels).status_code == 200
    shown = server.json("fleet", "show", "lab-1")["agent"]
    assert shown["labels"] == {"rack": "r1", "zone": "eu-1"}
    assert "labels: rack=r1 zone=eu-1" in server.cli("fleet", "show", "lab-1").stdout
    assert names(server, "zone=eu-1") == ["lab-1", "lab-2"]
    assert names(server, "zone=eu-1", "rack=r2") == ["lab-2"]  # every label given
    assert names(server, "zone=nowhere") == []

    changed = server.json("fleet", "label", "lab-2", "zone=us-1", "rack-", "tier=web")
    assert changed["labels"] == {"tier": "web", "zone": "us-1"}
    assert names(server, "zone=us-1") == ["lab-2", "lab-3"]
    by_id = server.json("fleet", "label", shown["id"], "--id", "zone-")
    assert by_id["labels"] == {"rack": "r1"}
    page = server.json("fleet", "list", "--label", "rack=r1")
    assert page["total"] == 1
    assert page["agents"][0]["labels"] == {"rack": "r1"}


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["fleet", "label", "lab-bad", "zone"], 2, "invalid label 'zone'"),
        (["fleet", "label", "lab-bad", "zone=a b"], 2, "invalid label"),
        (["fleet", "label", "nobody", "zone=x"], 3, "nobody"),
        (["fleet", "list", "--label", "zone"], 2, "invalid label"),
    ],
)
def test_a_bad_label_or_agent_is_refused(
    server: Fleet, args: list[str], code: int, words: str
) -> None:
    if not names(server, "bad=1"):
        assert enroll(server, "lab-bad", ["bad=1"]).status_code == 200
    done = server.cli(*args, check=False)
    assert done.returncode == code, done.stderr
    assert words in done.stderr
    assert server.json("fleet", "show", "lab-bad")["agent"]["labels"] == {"bad": "1"}


def test_the_api_refuses_bad_labels_before_anything_is_stored(server: Fleet) -> None:
    refused = enroll(server, "lab-refused", ["zone=eu 1"])
    assert refused.status_code == 422, refused.text
    assert "invalid label" in refused.json()["message"]
    too_many = enroll(server, "lab-many", [f"k{i}=v" for i in range(33)])
    assert too_many.status_code == 422
    assert names(server) == sorted(set(names(server)) - {"lab-refused", "lab-many"})
    assert enroll(server, "lab-max", [f"k{i}=v" for i in range(32)]).status_code == 200
    with admin_client(server) as http:
        over = http.post("/api/v1/agents/lab-max/labels", json={"labels": ["one=more"]})
        assert over.status_code == 422, over.text
        assert "more than 32" in over.json()["message"]
        assert http.post("/api/v1/agents/lab-max/labels", json={"labels": []}).status_code == 422


def test_a_removed_agent_takes_its_labels_along(server: Fleet) -> None:
    assert enroll(server, "lab-gone", ["gone=yes"]).status_code == 200
    server.cli("agent", "remove", "lab-gone")
    assert names(server, "gone=yes") == []
    if server.database_url == "":  # the rows themselves, on SQLite
        import sqlite3

        path = sqlite_url(server.server_dir).removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM agent_labels WHERE key='gone'").fetchone() == (
                0,
            )
