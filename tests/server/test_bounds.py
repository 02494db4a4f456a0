"""Every input is bounded and validated before it is stored, alike on SQLite and PostgreSQL.

Each case is an input that once got in (or gave a 500): it is now refused with a 4xx in the
{error, message, hint} shape, the answer does not echo it, and nothing of it is stored.
Against one real server per dialect, shared by the module.
"""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.test_agent_api import admin_client, agents, enrolled, fleet_on, upload
from tests.support.fleet import Fleet
from uptend.protocol import limits

GROUP, APP = "bounds", "bounded"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with fleet_on(request.param, tmp_path_factory.mktemp("fleet")) as fleet:
        with admin_client(fleet) as http:
            http.put(f"/api/v1/groups/{GROUP}", json={"app": APP}).raise_for_status()
        yield fleet


@pytest.fixture(scope="module")
def credential(server: Fleet) -> str:
    return enrolled(server, "bounded-agent", group=GROUP)


def post(server: Fleet, path: str, content: bytes, credential: str = "") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=60)


def report(**changes: Any) -> dict[str, Any]:
    return {"app": APP, "version": "1.0", "outcome": "failed", "at": "2030-01-01T00:00:00Z"} | (
        changes
    )


def checkin(**changes: Any) -> bytes:
    body = {"agent_version": "0.1.0", "apps": [{"app": APP, "version": "1.0"}]} | changes
    return json.dumps(body).encode()


def refused(response: httpx.Response, status: int, *words: str) -> dict[str, str]:
    """The answer is `status` in our shape, says `words`, and is short whatever came in."""
    assert response.status_code == status, response.text[:500]
    body: dict[str, str] = response.json()
    assert set(body) == {"error", "message", "hint"}, body
    assert len(response.content) < 2048, len(response.content)
    for w in words:
        assert w in body["message"], body
    return body


def stored(server: Fleet) -> dict[str, Any]:
    """What the server shows of the test's agent: its apps, version and reports."""
    agent = agents(server)["bounded-agent"]
    with admin_client(server) as http:
        detail = http.get(f"/api/v1/agents/{agent['id']}", params={"by_id": "true"}).json()
    return {"apps": agent["apps"], "version": agent["agent_version"], "reports": detail["reports"]}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # a report time without a time zone (was a 500: naive datetime into UTCDateTime)
        (checkin(reports=[report(at="2030-01-01T00:00:00")]), "needs a time zone"),
        # a time that overflows when normalised to UTC (was a 500: OverflowError)
        (checkin(reports=[report(at="9999-12-31T23:59:59-23:59")]), "out of range"),
        # a number where a time goes (pydantic alone takes it as epoch seconds)
        (checkin(reports=[report(at=0)]), "ISO 8601"),
        (checkin(valid_until=0), "ISO 8601"),
        (checkin(reports=[report(at="0001-01-01T00:00:00+23:59")]), "out of range"),
        (checkin(reports=[report(at="1900-01-01T00:00:00Z")]), "years"),
        # a lone surrogate in agent_version (was a 500: it could not be stored or encoded)
        (b'{"agent_version": "0.1\\udcff"}', "agent_version"),
        (checkin(agent_version="0.1.0\x00"), "agent_version"),
        (checkin(agent_version="9" * 65), "agent_version"),
        # NaN and infinite numbers (a NaN made the 422 itself unencodable)
        (checkin(apps=[{"app": APP, "probation_left_s": float("nan")}]), "finite"),
        (checkin(apps=[{"app": APP, "bytes_done": -1}]), "bytes_done"),
        (checkin(apps=[{"app": APP, "bytes_done": 1 << 64}]), "bytes_done"),
        # names: 10,000 characters, a NUL, upper case, a path
        (checkin(apps=[{"app": "a" * 10_000}]), "apps.0.app"),
        (checkin(apps=[{"app": "ab\x00c"}]), "apps.0.app"),
        (checkin(apps=[{"app": "../etc"}]), "apps.0.app"),
        (checkin(reports=[report(app="A" * 10_000)]), "reports.0.app"),
        # versions that are not versions, or too long for the column
        (checkin(apps=[{"app": APP, "version": "latest"}]), "apps.0.version"),
        (checkin(apps=[{"app": APP, "target": "1.0+local"}]), "apps.0.target"),
        (checkin(reports=[report(version="1" * 65)]), "reports.0.version"),
        # the install kind and the package read back: short words, package names and versions
        (checkin(apps=[{"app": APP, "kind": "Deb"}]), "apps.0.kind"),
        (checkin(apps=[{"app": APP, "kind": "k" * 17}]), "apps.0.kind"),
        (checkin(apps=[{"app": APP, "package": "[red]pkg"}]), "apps.0.package"),
        (checkin(apps=[{"app": APP, "package": "p" * 101}]), "apps.0.package"),
        (checkin(apps=[{"app": APP, "package_expected": "2.0 -1"}]), "apps.0.package_expected"),
        (checkin(apps=[{"app": APP, "package_version": "2.1\x1b[2J"}]), "apps.0.package_version"),
        (checkin(apps=[{"app": APP, "package_version": "1" * 256}]), "apps.0.package_version"),
        (checkin(apps=[{"app": APP, "package_version": ""}]), "apps.0.package_version"),
        # outcomes and states as enums
        (checkin(reports=[report(outcome="exploded")]), "reports.0.outcome"),
        (checkin(apps=[{"app": APP, "state": "dancing"}]), "apps.0.state"),
        # free text: bounded, no NUL (PostgreSQL text cannot hold one)
        (checkin(reports=[report(log_tail="x" * (limits.MAX_LOG_TAIL + 1))]), "log_tail"),
        (checkin(reports=[report(reason="boom\x00")]), "reports.0.reason"),
        (checkin(apps=[{"app": APP, "reason": "r" * (limits.MAX_REASON + 1)}]), "reason"),
        # at most MAX_REPORTS reports and MAX_APPS apps per check-in
        (checkin(reports=[report()] * 1100), "reports"),
        (checkin(reports=[report()] * (limits.MAX_REPORTS + 1)), "reports"),
        (checkin(apps=[{"app": f"a{i}"} for i in range(limits.MAX_APPS + 1)]), "apps"),
    ],
)
def test_a_bad_check_in_is_refused_and_nothing_is_stored(
    server: Fleet, credential: str, body: bytes, says: str
) -> None:
    before = stored(server)
    error = refused(post(server, "/api/v1/checkin", body, credential), 422, says)
    assert error["error"] == "ConfigError"
    assert stored(server) == before


def test_the_bounds_themselves_are_accepted(server: Fleet, credential: str) -> None:
    reports = [
        report(log_tail="é" * limits.MAX_LOG_TAIL, reason="r" * limits.MAX_REASON)
    ] * limits.MAX_REPORTS
    body = checkin(agent_version="9" * limits.MAX_AGENT_VERSION, reports=reports)
    response = post(server, "/api/v1/checkin", body, credential)
    assert response.status_code == 200, response.text[:500]
    seen = stored(server)
    assert seen["version"] == "9" * limits.MAX_AGENT_VERSION
    assert seen["reports"][0]["log_tail"] == "é" * limits.MAX_LOG_TAIL
    assert seen["reports"][0]["at"] == "2030-01-01T00:00:00Z"


def test_a_time_is_stored_in_utc(server: Fleet, credential: str) -> None:
    body = checkin(reports=[report(version="7.0", at="2031-06-01T12:00:00+05:30")])
    assert post(server, "/api/v1/checkin", body, credential).status_code == 200
    [seen] = [r for r in stored(server)["reports"] if r["version"] == "7.0"]
    assert seen["at"] == "2031-06-01T06:30:00Z"


def test_1100_reports_with_8_8_mb_of_log_tails_are_refused_unread(
    server: Fleet, credential: str
) -> None:
    """Over the body cap: a 413 before a byte of it is parsed."""
    body = checkin(reports=[report(log_tail="x" * 8000)] * 1100)
    assert len(body) > 8_800_000
    before = stored(server)
    refused(post(server, "/api/v1/checkin", body, credential), 413, "over the limit")
    assert stored(server) == before


def test_an_unassigned_app_is_refused_by_name(server: Fleet, credential: str) -> None:
    before = stored(server)
    for body in (
        checkin(apps=[{"app": APP, "version": "1.0"}, {"app": "never-assigned"}]),
        checkin(reports=[report(app="never-assigned")]),
    ):
        error = refused(post(server, "/api/v1/checkin", body, credential), 422, "never-assigned")
        assert f"group {GROUP}" in error["message"]
        assert f"uptend group set {GROUP}" in error["hint"]
    assert stored(server) == before


def test_a_published_app_not_assigned_is_recorded(server: Fleet, credential: str) -> None:
    """An app the server knows (it has a release) is still shown, as "not assigned"."""
    upload(server, "bounds-elsewhere", "1.0")
    body = checkin(apps=[{"app": APP, "version": "1.0"}, {"app": "bounds-elsewhere"}])
    assert post(server, "/api/v1/checkin", body, credential).status_code == 200
    apps = {a["app"]: a for a in stored(server)["apps"]}
    assert apps["bounds-elsewhere"]["reason"]["code"] == "not_assigned"


@pytest.mark.parametrize(
    "body",
    [
        {"token": "t" * 10_000, "name": "n"},
        {"token": "ok", "name": "n" * (limits.MAX_AGENT_NAME + 1)},
        {"token": "ok", "name": "evil\x1b]0;title\x07"},
        {"token": "ok", "name": "nul\x00"},
        {"token": "ok", "name": "rtl\u202eexe.txt"},
        {"token": "ok", "name": "n", "group": "g" * 10_000},
    ],
)
def test_a_bad_enrollment_is_refused_unechoed(server: Fleet, body: dict[str, str]) -> None:
    before = set(agents(server))
    refused(post(server, "/api/v1/enroll", json.dumps(body).encode()), 422, "body.")
    assert set(agents(server)) == before


def test_nan_poll_interval_is_a_422_not_a_500(server: Fleet) -> None:
    with admin_client(server) as http:
        for raw in (b'{"poll_interval_s": NaN}', b'{"poll_interval_s": Infinity}'):
            response = http.put(
                f"/api/v1/groups/{GROUP}", content=raw, headers={"Content-Type": "application/json"}
            )
            refused(response, 422, "poll_interval_s")
        groups = {g["name"]: g for g in http.get("/api/v1/groups").json()}
    assert groups[GROUP]["poll_interval_s"] == 60.0


def test_a_validation_error_never_echoes_the_input(server: Fleet, credential: str) -> None:
    """A 1 MB wrong value comes back as a few hundred bytes saying where."""
    for body in (checkin(agent_version="v" * 1_000_000), json.dumps([1] * 200_000).encode()):
        error = refused(post(server, "/api/v1/checkin", body, credential), 422)
        assert "vvvv" not in error["message"]
        assert "/openapi.json" in error["hint"]
    response = post(server, "/api/v1/checkin", b"{not json", credential)
    refused(response, 422, "JSON")


def test_the_credential_is_checked_before_the_body_is_parsed(server: Fleet) -> None:
    """A stranger gets a 401 for a body that is not even JSON (it was a 422)."""
    for body in (b"{not json", checkin(agent_version="\x00")):
        refused(post(server, "/api/v1/checkin", body, "utc_not-a-credential"), 401, "credential")
        refused(post(server, "/api/v1/checkin", body), 401, "missing credential")


def test_an_admin_query_is_bounded(server: Fleet) -> None:
    with admin_client(server) as http:
        for path, params in (
            ("/api/v1/releases", {"app": "a" * 10_000}),
            ("/api/v1/agents", {"reason": "r" * 10_000}),
            ("/api/v1/agents", {"cursor": "c" * 10_000}),
            (f"/api/v1/agents/{'k' * 10_000}", {}),
        ):
            refused(http.get(path, params=params), 422)
        response = http.post(
            "/api/v1/releases", params={"app": APP, "version": "1" * 10_000}, content=b""
        )
        refused(response, 422, "query.version")
