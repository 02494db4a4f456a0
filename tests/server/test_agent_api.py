"""The agent API over real HTTP: enrollment, check-in credentials, auto-update, admin auth.

Each test runs against one real `uptend server` per dialect (SQLite and PostgreSQL), shared by
the module to keep the suite fast; tests keep to their own agent, group and app names, and
assert "unchanged" rather than "empty" where another test could have added rows.
"""

import contextlib
import hashlib
import sqlite3

import httpx

from tests.support.fleet import Fleet
from tests.support.servers import (
    admin_client,
    agents,
    app_of,
    check_in,
    directives,
    enroll,
    enrolled,
    fleet_on,
    running,
    upload,
)

# Other modules import these helpers from here as well as from tests.support.servers.
__all__ = [
    "admin_client",
    "agents",
    "app_of",
    "check_in",
    "directives",
    "enroll",
    "enrolled",
    "fleet_on",
    "running",
    "upload",
]


def assert_refused(response: httpx.Response, status: int, error: str, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert words in body["message"]


def test_enroll_with_a_bad_token_is_401_and_creates_no_agent(server: Fleet) -> None:
    before = agents(server)
    secret, _, fingerprint = server.enroll_token.partition(".")
    for token in (
        "",
        "ute_wrong",
        f"ute_{'x' * 43}.{fingerprint}",  # well formed, never issued
        f"{secret}x.{fingerprint}",
        server.admin_token,  # the admin token does not enroll
    ):
        response = enroll(server, "intruder", token=token)
        assert_refused(response, 401, "AuthError", "enrollment token is not valid")
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert agents(server) == before
    assert "intruder" not in before


def test_enroll_into_an_unknown_group_is_404_and_creates_no_agent(server: Fleet) -> None:
    before = agents(server)
    response = enroll(server, "lost", group="no-such-group")
    assert_refused(response, 404, "NotFoundError", "group no-such-group does not exist")
    assert "uptend group set no-such-group" in response.json()["hint"]
    assert_refused(enroll(server, "lost", group="Bad Group"), 422, "ConfigError", "body.group")
    assert_refused(enroll(server, " "), 422, "ConfigError", "agent name must be 1-128")
    assert agents(server) == before


def test_enroll_returns_the_root_the_token_vouches_for(server: Fleet) -> None:
    response = enroll(server, "trusting")
    assert response.status_code == 200, response.text
    body = response.json()
    fingerprint = server.enroll_token.partition(".")[2]
    assert hashlib.sha256(body["root"].encode()).hexdigest() == fingerprint
    served = httpx.get(f"{server.url}/tuf/metadata/1.root.json", timeout=30).content
    assert body["root"].encode() == served
    assert body["metadata_url"] == f"{server.url}/tuf/metadata/"
    assert body["targets_url"] == f"{server.url}/tuf/targets/"
    assert body["credential"].startswith("utc_")
    assert "trusting" in agents(server)
    # a second agent under the same name is refused, and the first one is untouched
    assert_refused(enroll(server, "trusting"), 409, "ConflictError", "already enrolled")


def test_check_in_with_a_bad_credential_is_401(server: Fleet) -> None:
    credential = enrolled(server, "checker")
    before = agents(server)
    for bad in ("utc_wrong", credential + "x", server.admin_token, server.enroll_token):
        response = check_in(server, bad, [running("demo", "9.9")])
        assert response.status_code == 401, (bad, response.text)
        assert response.json()["error"] == "AuthError"
    no_header = httpx.post(
        f"{server.url}/api/v1/checkin", json={"agent_version": "0.1.0"}, timeout=30
    )
    assert_refused(no_header, 401, "AuthError", "missing credential")
    assert check_in(server, credential, []).status_code == 200  # the right one works
    wrong_scheme = httpx.post(
        f"{server.url}/api/v1/checkin",
        json={"agent_version": "0.1.0"},
        headers={"Authorization": f"Basic {credential}"},
        timeout=30,
    )
    assert wrong_scheme.status_code == 401
    after = agents(server)
    assert after["checker"]["apps"] == before["checker"]["apps"]  # nothing recorded


def test_an_agent_credential_acts_only_as_itself(server: Fleet) -> None:
    with admin_client(server) as http:
        http.put("/api/v1/groups/twins", json={"app": "twin-app"}).raise_for_status()
    first = enrolled(server, "twin-1", group="twins")
    second = enrolled(server, "twin-2", group="twins")
    second_id = agents(server)["twin-2"]["id"]

    # the body cannot name another agent: extra fields are ignored, the credential decides
    response = check_in(server, first, [running("twin-app", "1.0")], agent_id=second_id)
    assert response.status_code == 200, response.text
    view = agents(server)
    assert app_of(view["twin-1"], "twin-app")["installed"] == "1.0"
    assert app_of(view["twin-2"], "twin-app")["installed"] is None
    assert view["twin-1"]["last_seen"] is not None
    assert view["twin-2"]["last_seen"] is None

    assert check_in(server, second, [running("twin-app", "2.0")]).status_code == 200
    view = agents(server)
    assert app_of(view["twin-1"], "twin-app")["installed"] == "1.0"
    assert app_of(view["twin-2"], "twin-app")["installed"] == "2.0"
    assert view["twin-2"]["last_seen"] is not None


def test_auto_update_off_keeps_the_installed_version_and_says_why(server: Fleet) -> None:
    with admin_client(server) as http:
        change = {"app": "manual-app", "auto_update": False, "poll_interval_s": 5}
        http.put("/api/v1/groups/manual", json=change).raise_for_status()
    credential = enrolled(server, "manual-1", group="manual")
    upload(server, "manual-app", "1.0")

    # a new agent installs the newest release even with auto-update off ...
    assert directives(server, credential, [])["manual-app"]["version"] == "1.0"
    # ... and stays there once it runs it
    assert directives(server, credential, [running("manual-app", "1.0")])["manual-app"][
        "version"
    ] == ("1.0")
    upload(server, "manual-app", "2.0")
    held = directives(server, credential, [running("manual-app", "1.0")])["manual-app"]
    assert held["version"] == "1.0"
    assert "automatic updates are off" in held["reason"]

    outdated = agents(server, outdated=True)
    assert "manual-1" in outdated
    listed = app_of(outdated["manual-1"], "manual-app")
    assert (listed["installed"], listed["desired"], listed["newest"]) == ("1.0", "1.0", "2.0")
    assert listed["reason"]["code"] == "auto_update_off"
    assert "automatic updates are off" in listed["reason"]["message"]
    assert "2.0 is available" in listed["reason"]["message"]
    cli = server.json("fleet", "list", "--outdated", "--limit", "1000")
    assert "manual-1" in {a["name"] for a in cli["agents"]}

    with admin_client(server) as http:
        http.put("/api/v1/groups/manual", json={"auto_update": True}).raise_for_status()
    moved = directives(server, credential, [running("manual-app", "1.0")])["manual-app"]
    assert moved["version"] == "2.0"
    # once it runs 2.0 it is no longer outdated
    directives(server, credential, [running("manual-app", "2.0")])
    assert "manual-1" not in agents(server, outdated=True)


ADMIN_ROUTES = [
    ("GET", "/api/v1/releases", None),
    ("POST", "/api/v1/releases?app=demo&version=9.0", None),
    ("GET", "/api/v1/groups", None),
    ("PUT", "/api/v1/groups/default", {"poll_interval_s": 2}),
    ("GET", "/api/v1/agents", None),
    ("GET", "/api/v1/agents/someone", None),
    ("POST", "/api/v1/agents/someone/apps/demo/retry", None),
]


def test_admin_endpoints_need_the_admin_token(server: Fleet) -> None:
    credential = enrolled(server, "not-an-admin")
    with admin_client(server) as http:
        groups_before = http.get("/api/v1/groups").json()
        releases_before = http.get("/api/v1/releases").json()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for token in ("uta_wrong", server.admin_token + "x", credential, server.enroll_token, None):
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            for method, path, body in ADMIN_ROUTES:
                response = http.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (token, method, path, response.text)
                assert response.json()["error"] == "AuthError"
    with admin_client(server) as http:
        assert http.get("/api/v1/groups").json() == groups_before
        assert http.get("/api/v1/releases").json() == releases_before


def test_tokens_are_stored_as_digests_only(fleet: Fleet) -> None:
    credential = enrolled(fleet, "hashed")
    db = fleet.server_dir / "uptend.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = dict(conn.execute("SELECT kind, token_hash FROM tokens"))
        credentials = [row[0] for row in conn.execute("SELECT credential_hash FROM agents")]
    assert stored == {
        "admin": hashlib.sha256(fleet.admin_token.encode()).hexdigest(),
        "enroll": hashlib.sha256(fleet.enroll_token.encode()).hexdigest(),
    }
    assert credentials == [hashlib.sha256(credential.encode()).hexdigest()]
    # and no plaintext anywhere in the files, WAL included
    raw = b"".join(p.read_bytes() for p in fleet.server_dir.glob("uptend.db*"))
    for secret in (fleet.admin_token, fleet.enroll_token, credential):
        assert secret.encode() not in raw
        assert secret.partition(".")[0].encode() not in raw
