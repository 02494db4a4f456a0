"""The fleet view over real HTTP on SQLite and PostgreSQL: every reason, filters, pages, summary.

One server per dialect, shared by the module. The fleet is seeded the real way (groups and
releases through the admin API, agents enrolled and checking in over HTTP with their own
credentials), except two agents that must look offline: their state and an old last_seen are
written with SQL (time cannot be made to pass, and they never check in, so no last-seen flush
can overwrite them). Each test keeps to its own groups.

`--outdated` is checked against the OLD Python filter (copied below as the oracle), computed
from the raw tables (all releases, not channel heads).
"""

import base64
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.server.test_admin_cli import wide
from tests.server.test_agent_api import admin_client, check_in, enrolled, upload
from tests.support.fleet import Fleet, wait_until
from uptend.policy.desired import is_outdated
from uptend.protocol import ReasonCode
from uptend.protocol.versions import newest
from uptend.server.storage.db import sqlite_url


@pytest.fixture(scope="module")
def db(server: Fleet) -> Iterator[Engine]:
    """The server's own database, for the oracle and the offline agents."""
    engine = create_engine(server.database_url or sqlite_url(server.server_dir))
    yield engine
    engine.dispose()


def app(name: str, version: str | None, state: str, **extra: Any) -> dict[str, Any]:
    return {"app": name, "version": version, "state": state, **extra}


def page(fleet: Fleet, **params: Any) -> dict[str, Any]:
    with admin_client(fleet) as http:
        response = http.get("/api/v1/agents", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def every_page(fleet: Fleet, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        got = page(fleet, **params, **({"cursor": cursor} if cursor else {}))
        out += got["agents"]
        cursor = got["next_cursor"]
        if cursor is None:
            return out


# (agent, group) -> what it says at check-in; None: it never checks in; "offline": SQL below
WEB, API, OLD = "fv-web", "fv-api", "fv-old"
AGENTS: dict[str, tuple[str, list[dict[str, Any]] | str | None]] = {
    "fv-up": ("fv-on", [app(WEB, "2.0", "running")]),
    "fv-behind": ("fv-on", [app(WEB, "1.0", "running", reason="")]),
    "fv-updating": ("fv-on", [app(WEB, "1.0", "updating", target="2.0", reason="download 2.0")]),
    "fv-deferred": (
        "fv-on",
        [app(WEB, "1.0", "deferred", reason="deferred: a reboot is pending (flag exists)")],
    ),
    "fv-failed": ("fv-on", [app(WEB, "1.0", "failed", reason="2.0 was rolled back")]),
    "fv-failed-on-head": ("fv-on", [app(WEB, "2.0", "failed", reason="2.0 stopped passing")]),
    "fv-extra": ("fv-on", [app(WEB, "2.0", "running"), app(OLD, "1.0", "running")]),
    "fv-extra-failed": ("fv-on", [app(WEB, "2.0", "running"), app(OLD, "1.0", "failed")]),
    "fv-silent": ("fv-on", None),
    "fv-gone": ("fv-on", "offline"),
    "fv-gone-up": ("fv-on", "offline"),
    "fv-held": ("fv-off", [app(WEB, "1.0", "running")]),
    "fv-new-held": ("fv-off", [app(WEB, None, "pending")]),
    "fv-off-up": ("fv-off", [app(WEB, "2.0", "running")]),
    "[/]x [bold]y": ("fv-on", [app(WEB, "1.0", "running", reason="[red]boom[/] \x1b[2J")]),
}
OFFLINE_WEB = {"fv-gone": "1.0", "fv-gone-up": "2.0"}
EXPECTED: dict[str, dict[str, ReasonCode]] = {
    "fv-up": {WEB: ReasonCode.UP_TO_DATE, API: ReasonCode.NO_RELEASE},
    "fv-behind": {WEB: ReasonCode.UPDATE_PENDING, API: ReasonCode.NO_RELEASE},
    "fv-updating": {WEB: ReasonCode.UPDATING, API: ReasonCode.NO_RELEASE},
    "fv-deferred": {WEB: ReasonCode.DEFERRED_PRECONDITION, API: ReasonCode.NO_RELEASE},
    "fv-failed": {WEB: ReasonCode.FAILED, API: ReasonCode.NO_RELEASE},
    "fv-failed-on-head": {WEB: ReasonCode.FAILED, API: ReasonCode.NO_RELEASE},
    "fv-extra": {
        WEB: ReasonCode.UP_TO_DATE,
        API: ReasonCode.NO_RELEASE,
        OLD: ReasonCode.NOT_ASSIGNED,
    },
    "fv-extra-failed": {
        WEB: ReasonCode.UP_TO_DATE,
        API: ReasonCode.NO_RELEASE,
        OLD: ReasonCode.FAILED,
    },
    "fv-silent": {WEB: ReasonCode.NEVER_CHECKED_IN, API: ReasonCode.NO_RELEASE},
    "fv-gone": {WEB: ReasonCode.OFFLINE, API: ReasonCode.NO_RELEASE},
    "fv-gone-up": {WEB: ReasonCode.UP_TO_DATE, API: ReasonCode.NO_RELEASE},
    "fv-held": {WEB: ReasonCode.AUTO_UPDATE_OFF},
    "fv-new-held": {WEB: ReasonCode.UPDATE_PENDING},
    "fv-off-up": {WEB: ReasonCode.UP_TO_DATE},
    "[/]x [bold]y": {WEB: ReasonCode.UPDATE_PENDING, API: ReasonCode.NO_RELEASE},
}


@pytest.fixture(scope="module")
def every_reason(server: Fleet, db: Engine) -> dict[str, dict[str, Any]]:
    """The seeded fleet (groups fv-on, fv-off), as the view shows it, by agent name."""
    with admin_client(server) as http:
        for group, body in (
            ("fv-on", {"app": WEB}),
            ("fv-on", {"app": API, "channel": "beta"}),  # nothing published on beta
            ("fv-off", {"app": WEB, "auto_update": False}),
        ):
            http.put(f"/api/v1/groups/{group}", json=body).raise_for_status()
    upload(server, WEB, "1.0")
    upload(server, WEB, "2.0")
    upload(server, OLD, "1.0")
    old = datetime.now(UTC) - timedelta(days=1)
    checked_in: set[str] = set()
    for name, (group, says) in AGENTS.items():
        credential = enrolled(server, name, group=group)
        if isinstance(says, list):
            assert check_in(server, credential, says).status_code == 200
            checked_in.add(name)
        elif says == "offline":
            with db.begin() as conn:
                agent_id = conn.execute(
                    text("SELECT id FROM agents WHERE name = :n"), {"n": name}
                ).scalar_one()
                conn.execute(
                    text(
                        "INSERT INTO agent_apps (agent_id, app, installed, state, target, reason,"
                        " log_tail, retry, updated_at) VALUES (:id, :app, :v, 'running', NULL,"
                        " '', '', false, :at)"
                    ),
                    {"id": agent_id, "app": WEB, "v": OFFLINE_WEB[name], "at": old},
                )
                conn.execute(
                    text("UPDATE agents SET last_seen = :at WHERE id = :id"),
                    {"at": old.replace(tzinfo=None) if db.dialect.name == "sqlite" else old,
                     "id": agent_id},
                )  # fmt: skip
    assert set(AGENTS) - checked_in - {"fv-silent"} == set(OFFLINE_WEB)

    def view() -> dict[str, dict[str, Any]]:
        return {
            a["name"]: a
            for g in ("fv-on", "fv-off")
            for a in every_page(server, group=g, limit=1000)
        }

    def all_seen() -> bool:  # last-seen may be written in batches, up to 10 s late
        return all(view()[n]["last_seen"] is not None for n in checked_in)

    wait_until(all_seen, timeout_s=30, what="last_seen of every agent that checked in")
    return view()


def codes(agent: dict[str, Any]) -> dict[str, ReasonCode]:
    return {a["app"]: ReasonCode(a["reason"]["code"]) for a in agent["apps"]}


def test_every_reason_code_on_its_agent(every_reason: dict[str, dict[str, Any]]) -> None:
    assert {n: codes(a) for n, a in every_reason.items()} == EXPECTED
    schedule = {ReasonCode.FROZEN, ReasonCode.OUTSIDE_WINDOW}  # tests/e2e/test_schedule.py
    schedule |= {  # tests/e2e/test_rollouts.py
        ReasonCode.HALTED,
        ReasonCode.WAITING_WAVE,
        ReasonCode.CONCURRENCY_CAP,
    }
    schedule |= {ReasonCode.PINNED, ReasonCode.FLOOR}  # tests/server/test_pins_api.py
    assert {c for per_app in EXPECTED.values() for c in per_app.values()} == set(
        ReasonCode
    ) - schedule
    failed = {a["app"]: a for a in every_reason["fv-failed"]["apps"]}[WEB]
    assert failed["reason"] == {
        "code": "failed",
        "message": "2.0 was rolled back",
        "error": "2.0 was rolled back",
        "log_tail": "",
        "target": None,
    }
    [updating] = [a for a in every_reason["fv-updating"]["apps"] if a["app"] == WEB]
    assert updating["reason"] == {
        "code": "updating",
        "message": "download 2.0",
        "phase": "download 2.0",
        "target": "2.0",
    }
    [deferred] = [a for a in every_reason["fv-deferred"]["apps"] if a["app"] == WEB]
    assert deferred["reason"]["precondition"] == "a reboot is pending (flag exists)"
    [gone] = [a for a in every_reason["fv-gone"]["apps"] if a["app"] == WEB]
    assert gone["reason"]["code"] == "offline"
    assert gone["reason"]["after_s"] == 3 * 60 + 10  # three default polls + the flush bound
    assert gone["reason"]["since"] == every_reason["fv-gone"]["last_seen"]
    [held] = every_reason["fv-held"]["apps"]
    assert held["reason"] == {
        "code": "auto_update_off",
        "message": "automatic updates are off for group fv-off (2.0 is available)",
        "group": "fv-off",
        "available": "2.0",
    }
    assert (held["installed"], held["desired"], held["newest"]) == ("1.0", "1.0", "2.0")
    [fresh] = every_reason["fv-new-held"]["apps"]
    assert (fresh["desired"], fresh["reason"]["desired"]) == ("2.0", "2.0")  # install once
    [silent] = [a for a in every_reason["fv-silent"]["apps"] if a["app"] == WEB]
    assert silent["reason"]["code"] == "never_checked_in"
    [old] = [a for a in every_reason["fv-extra"]["apps"] if a["app"] == OLD]
    assert old["reason"] == {
        "code": "not_assigned",
        "message": f"{OLD} is no longer assigned to fv-on",
        "group": "fv-on",
    }


def old_outdated(db: Engine, groups: tuple[str, ...]) -> set[str]:
    """The OLD `services/fleet._view` filter, copied as the oracle, over the raw tables."""
    with db.connect() as conn:
        agents = conn.execute(text('SELECT id, name, "group" FROM agents')).all()
        plan: dict[str, dict[str, str]] = {}
        for group, app_name, channel in conn.execute(
            text('SELECT "group", app, channel FROM group_apps')
        ):
            plan.setdefault(group, {})[app_name] = channel
        versions: dict[tuple[str, str], list[str]] = {}
        for app_name, channel, version in conn.execute(
            text("SELECT app, channel, version FROM releases")
        ):
            versions.setdefault((app_name, channel), []).append(version)
        reported: dict[str, dict[str, tuple[str | None, str]]] = {}
        for agent_id, app_name, installed, state in conn.execute(
            text("SELECT agent_id, app, installed, state FROM agent_apps")
        ):
            reported.setdefault(agent_id, {})[app_name] = (installed, state)
    out: set[str] = set()
    for agent_id, name, group in agents:
        if group not in groups:
            continue
        assigned = plan.get(group, {})
        rows = reported.get(agent_id, {})
        apps = []
        for app_name in sorted(set(assigned) | set(rows)):
            installed, state = rows.get(app_name, (None, "pending"))
            if app_name in assigned:
                latest = newest(versions.get((app_name, assigned[app_name]), []))
            else:
                latest = installed
            apps.append((installed, latest, state))
        if any(is_outdated(i, n) or s == "failed" for i, n, s in apps):
            out.add(name)
    return out


def test_outdated_matches_the_old_filter(
    server: Fleet, db: Engine, every_reason: dict[str, dict[str, Any]]
) -> None:
    groups = ("fv-on", "fv-off")
    new = {a["name"] for g in groups for a in every_page(server, group=g, outdated="true")}
    assert new == old_outdated(db, groups)
    assert new == {n for n, per_app in EXPECTED.items() if any(
        c not in (ReasonCode.UP_TO_DATE, ReasonCode.NO_RELEASE, ReasonCode.NOT_ASSIGNED)
        for c in per_app.values()
    )}  # fmt: skip
    assert {n for n, a in every_reason.items() if a["outdated"]} == new
    assert "fv-gone-up" not in new  # offline but on the head: nothing to do


@pytest.mark.parametrize("code", list(ReasonCode))
def test_each_reason_filters_in_the_database(
    server: Fleet, every_reason: dict[str, dict[str, Any]], code: ReasonCode
) -> None:
    want = sorted(n for n, per_app in EXPECTED.items() if code in per_app.values())
    got = page(server, group="fv-on", reason=code.value, limit=1000)
    got_off = page(server, group="fv-off", reason=code.value, limit=1000)
    names = [a["name"] for a in got["agents"] + got_off["agents"]]
    assert sorted(names) == want
    assert got["total"] + got_off["total"] == len(want)
    for a in got["agents"]:  # the page shows every app of the agent, not only the matching one
        assert a == every_reason[a["name"]]


def test_group_and_app_filters_and_totals(
    server: Fleet, every_reason: dict[str, dict[str, Any]]
) -> None:
    off = page(server, group="fv-off")
    assert [a["name"] for a in off["agents"]] == ["fv-held", "fv-new-held", "fv-off-up"]
    assert (off["total"], off["next_cursor"]) == (3, None)
    old = page(server, app=OLD)  # reported but no longer assigned: still found by --app
    assert [a["name"] for a in old["agents"]] == ["fv-extra", "fv-extra-failed"]
    assert all([x["app"] for x in a["apps"]] == [OLD] for a in old["agents"])  # narrowed
    failed_web = page(server, app=WEB, reason="failed", group="fv-on")
    assert [a["name"] for a in failed_web["agents"]] == ["fv-failed", "fv-failed-on-head"]
    outdated_off = page(server, group="fv-off", outdated="true")
    assert [a["name"] for a in outdated_off["agents"]] == ["fv-held", "fv-new-held"]
    assert page(server, group="no-such-group") == {
        "agents": [],
        "total": 0,
        "next_cursor": None,
        "last_seen_max_lag_s": 10.0,
    }
    on = page(server, group="fv-on", limit=1000)
    assert on["total"] == sum(1 for g, _ in AGENTS.values() if g == "fv-on")
    assert [a["name"] for a in on["agents"]] == sorted(a["name"] for a in on["agents"])


def test_summary_counts_per_app(server: Fleet, every_reason: dict[str, dict[str, Any]]) -> None:
    summary = server.json("fleet", "summary")
    by_app = {a["app"]: a for a in summary["apps"]}
    everyone = every_page(server, limit=1000)  # the whole fleet: other tests' agents too
    assert summary["agents"] == len(everyone)
    assert summary["outdated"] == sum(1 for a in everyone if a["outdated"])
    with admin_client(server) as http:
        groups = http.get("/api/v1/groups").json()
    plan = {(g["name"], a["app"]) for g in groups for a in g["apps"]}
    for name in (WEB, API, OLD):
        rows = [(a["group"], x) for a in everyone for x in a["apps"] if x["app"] == name]
        want_on = sum(
            1 for g, x in rows if (g, name) in plan
            and x["installed"] is not None and x["installed"] == x["desired"]
        )  # fmt: skip
        assert by_app[name] == {
            "app": name,
            "agents": len(rows),
            "versions": dict(sorted(Counter(x["installed"] or "none" for _, x in rows).items())),
            "on_desired": want_on,
            "share_on_desired": round(want_on / len(rows), 4),
            "reasons": dict(sorted(Counter(x["reason"]["code"] for _, x in rows).items())),
        }
    # the seeded fleet, by hand: 15 agents run or should run fv-web
    web = by_app[WEB]
    assert web["versions"] == {"1.0": 7, "2.0": 6, "none": 2}
    assert web["reasons"]["failed"] == 2
    # on desired: the 6 on 2.0 (one of them failed since), and fv-held (its group holds 1.0)
    assert web["on_desired"] == 7
    table = wide(server, "fleet", "summary")
    assert WEB in table
    assert "update_pending: 3" in table


def test_pages_are_stable_under_inserts(server: Fleet) -> None:
    """Agents enrolled between pages: none of those present at the start skipped or repeated."""
    with admin_client(server) as http:
        http.put("/api/v1/groups/pg", json={"poll_interval_s": 30}).raise_for_status()
    start = [f"pg-{i:03d}" for i in range(0, 40, 2)]
    for name in start:
        enrolled(server, name, group="pg")
    seen: list[str] = []
    cursor: str | None = None
    inserted = 0
    while True:
        got = page(server, group="pg", limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(got["agents"]) <= 3
        seen += [a["name"] for a in got["agents"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
        # one before the cursor, one right after it, one at the end
        last = got["agents"][-1]["name"]
        for name in (f"pg-000-{inserted:03d}", f"{last}-after", f"pg-999-{inserted:03d}"):
            enrolled(server, name, group="pg")
        inserted += 1
    assert len(seen) == len(set(seen)), "an agent was repeated"
    assert set(start) <= set(seen), f"skipped: {set(start) - set(seen)}"
    assert seen == sorted(seen)
    assert inserted >= 5
    final = page(server, group="pg", limit=1000)
    assert final["total"] == len(start) + 3 * inserted
    assert f"pg-999-{inserted - 1:03d}" in seen  # inserted ahead of the cursor: seen


def test_bad_cursor_limit_and_reason_are_refused_clearly(server: Fleet) -> None:
    not_json = base64.urlsafe_b64encode(b"not json").decode()
    no_after = base64.urlsafe_b64encode(b'{"before": "x"}').decode()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit must be between 1 and 1000, not 0"),
        ({"limit": 1001}, "limit must be between 1 and 1000, not 1001"),
        ({"cursor": "%%%not-base64"}, "is not valid"),
        ({"cursor": not_json}, "is not valid"),
        ({"cursor": no_after}, "is not valid"),
        ({"reason": "sleepy"}, "unknown reason code 'sleepy'"),
    ]
    with admin_client(server) as http:
        for params, words in cases:
            response = http.get("/api/v1/agents", params=params)
            assert response.status_code == 422, (params, response.text)
            body = response.json()
            assert body["error"] == "ConfigError", body
            assert words in body["message"], body
            assert body["hint"], body
        response = http.get("/api/v1/agents", params={"limit": "many"})
        assert response.status_code == 422  # FastAPI's own check of the type
    done = server.cli("fleet", "list", "--limit", "0", check=False)
    assert done.returncode == 2, done.stderr
    assert "limit must be between 1 and 1000" in done.stderr
    assert "Traceback" not in done.stderr
    done = server.cli("fleet", "list", "--cursor", "garbage", check=False)
    assert (done.returncode, "Traceback" in done.stderr) == (2, False), done.stderr
    assert "the cursor 'garbage' is not valid" in done.stderr


def test_the_table_prints_agent_text_literally(
    server: Fleet, every_reason: dict[str, dict[str, Any]]
) -> None:
    out = wide(server, "fleet", "list", "--group", "fv-on", "--reason", "update_pending")
    assert "[/]x [bold]y" in out
    assert "[red]boom[/]" in out
    assert "\x1b" not in out  # a terminal escape from an agent prints escaped
    assert "[red]boom[/] \\x1b[2J" in out
    shown = wide(server, "fleet", "show", "[/]x [bold]y")
    assert "[/]x [bold]y" in shown
    assert "last seen (≤10s late)" in out


def test_the_next_page_is_printed_for_people(
    server: Fleet, every_reason: dict[str, dict[str, Any]]
) -> None:
    out = wide(server, "fleet", "list", "--group", "fv-on", "--limit", "2")
    total = sum(1 for g, _ in AGENTS.values() if g == "fv-on")
    assert f"2 of {total} agents" in out
    cursor = out.rsplit("--cursor ", 1)[1].split()[0]
    second = page(server, group="fv-on", limit=2, cursor=cursor)
    first = page(server, group="fv-on", limit=2)
    assert second["agents"][0]["name"] > first["agents"][-1]["name"]
