"""The admin CLI against a real server over HTTP on 127.0.0.1: happy paths and refusals.

Every refusal checks three things: the exit code of its error class (`uptend.errors`), a
message on stderr that names the problem (never a traceback), and that nothing changed on the
server: the release list, the TUF metadata files, the targets version and `targets/`.

Servers are module-scoped, one per dialect: each refusal then also proves it left a server
that others used untouched. Refusals decided by the CLI before any request run on SQLite only;
everything the server decides runs on SQLite and PostgreSQL.
"""

import hashlib
import http.server
import json
import os
import socket
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.server.test_agent_api import (
    admin_client,
    check_in,
    enrolled,
    fleet_on,
    running,
    upload,
)
from tests.support.fleet import UPTEND, Fleet, make_release
from uptend import archive

SQLITE_ONLY = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """A running server holding release demo 1.0 (so a second 1.0 is a duplicate)."""
    with fleet_on(request.param, tmp_path_factory.mktemp("fleet")) as fleet:
        upload(fleet, "demo", "1.0")
        yield fleet


def wide(fleet: Fleet, *args: str) -> str:
    """The stdout of a CLI command on a terminal wide enough that rich wraps no cell."""
    env = {**fleet.env(), "COLUMNS": "400"}
    done = subprocess.run([*UPTEND, *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout


def uptend(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*UPTEND, *args], capture_output=True, text=True, check=False)


def assert_fails(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """Exit `code`, one `error:` line naming the problem, no traceback, nothing on stdout."""
    output = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == code, output
    assert "Traceback" not in done.stderr, output
    assert done.stdout == "", output
    for word in words:
        assert word in done.stderr, output


def published(fleet: Fleet) -> dict[str, Any]:
    """Everything a publish changes: releases, TUF files, the signed targets and their files."""
    tuf = fleet.server_dir / "tuf"
    timestamp = json.loads((tuf / "metadata" / "timestamp.json").read_text())["signed"]
    snapshot_v = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((tuf / "metadata" / f"{snapshot_v}.snapshot.json").read_text())
    versions = {name: m["version"] for name, m in snapshot["signed"]["meta"].items()}
    signed_targets = []
    for name, version in versions.items():  # the top-level targets role and each app's role
        role = json.loads((tuf / "metadata" / f"{version}.{name}").read_text())
        signed_targets += role["signed"]["targets"]
    with admin_client(fleet) as http:
        releases = http.get("/api/v1/releases").json()
    return {
        "releases": releases,
        "role_versions": versions,
        "signed_targets": sorted(signed_targets),
        "metadata_files": sorted(p.name for p in (tuf / "metadata").iterdir()),
        "target_files": sorted(str(p) for p in (tuf / "targets").rglob("*")),
        "uploads": sorted(p.name for p in (fleet.server_dir / "uploads").iterdir()),
    }


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but never listens: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class _NotUptend(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>some other web server</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def other_web_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that is not uptend: it answers HTML to everything."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotUptend)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def zip_dir(src: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    return dest


def tar_dir(src: Path, dest: Path) -> Path:
    archive.pack_dir(src, dest)
    return dest


# --- server init -----------------------------------------------------------------------


def test_server_init_creates_a_private_data_dir_and_refuses_to_reuse_one(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    done = uptend("server", "init", str(data), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert set(info) == {
        "admin_token",
        "enroll_token",
        "root_fingerprint",
        "data_dir",
        "database_url",
    }
    assert info["data_dir"] == str(data)
    assert info["database_url"] == f"sqlite:///{data.resolve() / 'uptend.db'}"
    assert info["admin_token"].startswith("uta_")
    root = (data / "tuf" / "metadata" / "1.root.json").read_bytes()
    assert info["root_fingerprint"] == hashlib.sha256(root).hexdigest()
    assert info["enroll_token"].startswith("ute_")
    assert info["enroll_token"].endswith("." + info["root_fingerprint"])
    keys = sorted((data / "tuf" / "keys").iterdir())
    expected = ["releases.pem", "root.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    assert [k.name for k in keys] == expected
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert (data / "tuf" / "keys").stat().st_mode & 0o777 == 0o700
    assert data.stat().st_mode & 0o077 == 0  # the database is in here too

    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    again = uptend("server", "init", str(data), "--json")
    assert_fails(again, 2, f"{data} already exists and is not empty", "hint:")
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before

    a_file = tmp_path / "a-file"
    a_file.write_text("not a dir")
    assert_fails(uptend("server", "init", str(a_file)), 2, "already exists and is not empty")
    assert a_file.read_text() == "not a dir"

    human = uptend("server", "init", str(tmp_path / "srv2"))
    assert human.returncode == 0, human.stderr
    assert "admin token:" in human.stdout
    assert "0600" in human.stdout  # it says where the keys are and how they are kept


def test_server_run_refuses_a_dir_that_is_not_a_server(tmp_path: Path) -> None:
    assert_fails(
        uptend("server", "run", str(tmp_path), "--port", "0"),
        2,
        "is not an uptend server data dir",
        "uptend server init",
    )


# --- release publish / list ------------------------------------------------------------


def test_publish_a_directory_a_tar_gz_and_a_zip(server: Fleet, tmp_path: Path) -> None:
    before = published(server)
    done = server.cli(
        "release", "publish", "shipped", "1.0", str(make_release(tmp_path, "1.0")), "--json"
    )
    release = json.loads(done.stdout)
    assert release["app"] == "shipped"
    assert release["version"] == "1.0"
    assert release["channel"] == "stable"
    assert release["target"] == "shipped/1.0/shipped-1.0.tar.gz"

    gz = tar_dir(make_release(tmp_path, "1.1"), tmp_path / "shipped-1.1.tar.gz")
    done = server.cli("release", "publish", "shipped", "1.1", str(gz))
    assert "published shipped 1.1 on stable" in done.stdout
    zipped = zip_dir(make_release(tmp_path, "2.0b1"), tmp_path / "shipped.zip")
    server.cli("release", "publish", "shipped", "2.0b1", str(zipped), "--channel", "beta")

    listed = server.json("release", "list", "shipped")
    assert [(r["version"], r["channel"], r["target"]) for r in listed] == [
        ("1.0", "stable", "shipped/1.0/shipped-1.0.tar.gz"),
        ("1.1", "stable", "shipped/1.1/shipped-1.1.tar.gz"),
        ("2.0b1", "beta", "shipped/2.0b1/shipped-2.0b1.zip"),
    ]
    assert listed[0] == release
    for r in listed:
        assert set(r) == {
            "app", "version", "channel", "target", "length", "sha256", "created_at", "critical",
            "floor",
        }  # fmt: skip
        assert datetime.fromisoformat(r["created_at"]).tzinfo is not None
        # the signed artifact is served as a consistent-snapshot file named by its hash
        [stored] = (server.server_dir / "tuf" / "targets" / "shipped" / r["version"]).iterdir()
        assert stored.name == f"{r['sha256']}.{r['target'].rsplit('/', 1)[1]}"
        assert stored.stat().st_size == r["length"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == r["sha256"]
    assert hashlib.sha256(gz.read_bytes()).hexdigest() == listed[1]["sha256"]  # as uploaded
    assert hashlib.sha256(zipped.read_bytes()).hexdigest() == listed[2]["sha256"]

    after = published(server)
    assert "app.shipped.json" not in before["role_versions"]
    assert after["role_versions"]["app.shipped.json"] == 3  # created, then two more versions
    assert set(after["signed_targets"]) - set(before["signed_targets"]) == {
        r["target"] for r in listed
    }
    assert after["uploads"] == []
    everything = server.json("release", "list")
    assert [r["app"] for r in everything].count("demo") == 1
    table = server.cli("release", "list", "shipped")
    assert "2.0b1" in table.stdout
    assert "beta" in table.stdout


def _dir(manifest: str | None = None) -> Callable[[Path], Path]:
    return lambda where: make_release(where, "9.0", manifest=manifest)


def _no_manifest(where: Path) -> Path:
    src = make_release(where, "9.0")
    (src / "uptend.toml").unlink()
    return src


def _nonexistent(where: Path) -> Path:
    return where / "no-such-dir"


def _wrong_suffix(where: Path) -> Path:
    path = where / "release.rar"
    path.write_bytes(b"Rar!\x1a\x07\x00")
    return path


def _tar_with(manifest: str) -> Callable[[Path], Path]:
    return lambda where: tar_dir(make_release(where, "9.0", manifest=manifest), where / "r.tgz")


def _zip_without_manifest(where: Path) -> Path:
    return zip_dir(_no_manifest(where), where / "r.zip")


def _truncated_tar(where: Path) -> Path:
    good = tar_dir(make_release(where, "9.0"), where / "good.tar.gz")
    bad = where / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[:40])
    return bad


# Decided by the CLI before any request. Unreadable files: tests run as root here, and root
# reads a chmod-000 file regardless, so a path that does not exist and a file of an unsupported
# kind stand in for "cannot use this path".
LOCAL_REFUSALS: dict[str, tuple[str, str, Callable[[Path], Path], list[str]]] = {
    "invalid-version": ("demo", "1..0", _dir(), ["invalid version '1..0'"]),
    "invalid-app-name": ("Demo!", "9.0", _dir(), ["invalid app name 'Demo!'"]),
    "missing-manifest": ("demo", "9.0", _no_manifest, ["has no uptend.toml at its root"]),
    "manifest-not-toml": ("demo", "9.0", _dir("[app\ncommand = "), ["is not valid TOML"]),
    "manifest-without-command": ("demo", "9.0", _dir("[app]\n"), ["invalid", "app.command"]),
    "archive-manifest-without-app": (
        "demo",
        "9.0",
        _tar_with("[health]\nprobation = 1\n"),
        ["r.tgz:uptend.toml is invalid", "app: Field required"],
    ),
    "archive-without-manifest": ("demo", "9.0", _zip_without_manifest, ["no uptend.toml"]),
    "corrupt-archive": ("demo", "9.0", _truncated_tar, ["bad.tar.gz"]),
    "nonexistent-path": ("demo", "9.0", _nonexistent, ["no-such-dir does not exist"]),
    "unsupported-suffix": ("demo", "9.0", _wrong_suffix, ["release.rar is not a release archive"]),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", list(LOCAL_REFUSALS))
def test_publish_refusal_decided_locally_publishes_nothing(
    server: Fleet, tmp_path: Path, case: str
) -> None:
    app, version, make, words = LOCAL_REFUSALS[case]
    before = published(server)
    done = server.cli("release", "publish", app, version, str(make(tmp_path)), check=False)
    assert_fails(done, 2, *words)
    assert published(server) == before


def test_publish_of_an_existing_version_is_a_conflict(server: Fleet, tmp_path: Path) -> None:
    before = published(server)
    done = server.cli(
        "release", "publish", "demo", "1.0", str(make_release(tmp_path, "1.0")), check=False
    )
    assert_fails(done, 4, "release demo 1.0 already exists", "hint: publish a new version")
    assert published(server) == before


def test_publish_with_a_bad_token_is_refused(server: Fleet, tmp_path: Path) -> None:
    before = published(server)
    src = str(make_release(tmp_path, "9.0"))
    done = server.cli("release", "publish", "demo", "9.0", src, "--token", "uta_no", check=False)
    assert_fails(done, 7, "the admin token is not valid")
    listing = server.cli("release", "list", "--token", server.enroll_token, check=False)
    assert_fails(listing, 7, "the admin token is not valid")
    env_only = subprocess.run(
        [*UPTEND, "release", "publish", "demo", "9.0", src, "--server", server.url],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "UPTEND_TOKEN"},
    )
    assert_fails(env_only, 2, "no admin token given", "UPTEND_TOKEN")
    assert published(server) == before


@SQLITE_ONLY
def test_publish_to_an_unreachable_server_is_transient(
    server: Fleet, tmp_path: Path, closed_port: int
) -> None:
    src = str(make_release(tmp_path, "9.0"))
    url = f"http://127.0.0.1:{closed_port}"
    done = server.cli("release", "publish", "demo", "9.0", src, "--server", url, check=False)
    assert_fails(done, 6, f"cannot reach the server at {url}", "hint:")
    assert_fails(server.cli("fleet", "list", "--server", url, check=False), 6, "cannot reach")


@SQLITE_ONLY
def test_a_server_that_is_not_uptend_is_named_as_such(server: Fleet, other_web_server: str) -> None:
    done = server.cli("release", "list", "--server", other_web_server, check=False)
    assert_fails(done, 2, "did not answer with JSON: is it an uptend server?")


def test_the_server_refuses_bad_uploads_itself(server: Fleet, tmp_path: Path) -> None:
    """What the CLI checks, the server checks again: a client may not be the uptend CLI."""
    before = published(server)
    good = tar_dir(make_release(tmp_path, "9.0"), tmp_path / "good.tar.gz").read_bytes()
    bad_manifest = tar_dir(
        make_release(tmp_path, "9.0", manifest="[app]\n"), tmp_path / "bad.tar.gz"
    ).read_bytes()
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        ({"app": "demo", "version": "1..0"}, good, 422, "invalid version"),
        ({"app": "Demo", "version": "9.0"}, good, 422, "invalid app name"),
        ({"app": "demo", "version": "9.0", "channel": "Beta"}, good, 422, "invalid channel"),
        ({"app": "demo", "version": "1.0"}, good, 409, "already exists"),
        ({"app": "demo", "version": "9.0"}, bad_manifest, 422, "app.command"),
        ({"app": "demo", "version": "9.0"}, good[:40], 422, ""),
        ({"app": "demo", "version": "9.0", "format": "zip"}, good, 422, ""),
        ({"app": "demo", "version": "9.0", "format": "rar"}, good, 422, ""),
    ]
    with admin_client(server) as http:
        for params, body, status, words in cases:
            response = http.post("/api/v1/releases", params=params, content=body)
            assert response.status_code == status, (params, response.text)
            assert words in response.text, (params, response.text)
    assert published(server) == before


# --- group set / list ------------------------------------------------------------------


def test_group_set_creates_and_changes_a_group(server: Fleet) -> None:
    created = server.json(
        "group", "set", "web", "--app", "site", "--channel", "beta", "--poll-interval", "5",
        "--no-auto-update",
    )  # fmt: skip
    assert created == {
        "name": "web",
        "poll_interval_s": 5.0,
        "auto_update": False,
        "apps": [{"app": "site", "channel": "beta", "pin": None}],
        "windows": [],
    }
    switched = server.cli("group", "set", "web", "--auto-update")  # the human output
    assert "web" in switched.stdout
    assert "on" in switched.stdout
    more = server.json(
        "group", "set", "web", "--app", "api", "--channel", "edge", "--poll-interval", "600"
    )
    assert more == {
        **created,
        "auto_update": True,
        "poll_interval_s": 600.0,
        "apps": [
            {"app": "api", "channel": "edge", "pin": None},
            {"app": "site", "channel": "beta", "pin": None},
        ],
    }
    moved = server.json("group", "set", "web", "--app", "site")  # --channel defaults to stable
    site = {"app": "site", "channel": "stable", "pin": None}
    assert moved == {**more, "apps": [more["apps"][0], site]}
    assert_fails(
        server.cli("group", "set", "web", check=False), 2, "nothing to change for group web"
    )

    groups = server.json("group", "list")
    assert [g["name"] for g in groups] == sorted(g["name"] for g in groups)
    by_name = {g["name"]: g for g in groups}
    assert by_name["web"] == moved
    assert by_name["default"]["auto_update"] is True
    for g in groups:
        assert set(g) == {"name", "poll_interval_s", "auto_update", "apps", "windows"}
    with admin_client(server) as http:  # the server refuses what a non-CLI client might send
        for path, body in (
            ("/api/v1/groups/Web", {"poll_interval_s": 5}),
            ("/api/v1/groups/web", {"poll_interval_s": 0}),
            ("/api/v1/groups/web", {"app": "Site!"}),
            ("/api/v1/groups/web", {"app": "site", "channel": "Beta"}),
            ("/api/v1/groups/web", {}),
        ):
            response = http.put(path, json=body)
            assert response.status_code == 422, (path, body, response.text)
    assert server.json("group", "list") == groups


@SQLITE_ONLY
def test_group_set_refusals_decided_locally_change_nothing(server: Fleet) -> None:
    with admin_client(server) as http:
        http.put("/api/v1/groups/strict", json={"poll_interval_s": 30}).raise_for_status()
        before = http.get("/api/v1/groups").json()
    refusals: list[tuple[list[str], str]] = [
        (["strict", "--channel", "beta"], "nothing to change for group strict"),
        (["strict", "--app", "Site!"], "invalid app name 'Site!'"),
        (["strict", "--app", "site", "--channel", "Beta"], "invalid channel name 'Beta'"),
        (["strict", "--poll-interval", "0"], "--poll-interval"),
        (["strict", "--poll-interval", "86401"], "--poll-interval"),
        (["Strict", "--poll-interval", "5"], "invalid group name 'Strict'"),
        (["a/b", "--poll-interval", "5"], "invalid group name 'a/b'"),
    ]
    for args, words in refusals:
        assert_fails(server.cli("group", "set", *args, check=False), 2, words)
    with admin_client(server) as http:
        assert http.get("/api/v1/groups").json() == before


# --- fleet list / show / retry ---------------------------------------------------------


def test_fleet_list_show_and_retry(server: Fleet) -> None:
    with admin_client(server) as http:
        http.put("/api/v1/groups/ops", json={"app": "ops-app"}).raise_for_status()
    upload(server, "ops-app", "1.0")
    upload(server, "ops-app", "2.0")
    current = enrolled(server, "ops-current", group="ops")
    behind = enrolled(server, "ops-behind", group="ops")
    enrolled(server, "ops-silent", group="ops")
    assert check_in(server, current, [running("ops-app", "2.0")]).status_code == 200
    report = {
        "app": "ops-app",
        "version": "2.0",
        "outcome": "rolled_back",
        "reason": "health probe exited 3",
        "log_tail": "fatal: this build cannot start",
        "at": datetime.now(UTC).isoformat(),
    }
    failed = {**running("ops-app", "1.0"), "state": "failed", "reason": "2.0 was rolled back"}
    assert check_in(server, behind, [failed], reports=[report]).status_code == 200

    page = server.json("fleet", "list", "--group", "ops")
    assert (page["total"], page["next_cursor"], page["last_seen_max_lag_s"]) == (3, None, 10.0)
    agents = {a["name"]: a for a in page["agents"]}
    assert list(agents) == ["ops-behind", "ops-current", "ops-silent"]  # name order
    for agent in agents.values():
        assert set(agent) == {
            "id", "name", "group", "last_seen", "agent_version", "outdated", "apps", "revoked",
            "labels",
        }  # fmt: skip
        for app in agent["apps"]:
            assert set(app) == {
                "app", "installed", "desired", "newest", "state", "reason", "log_tail", "critical",
                "stopped_by_operator", "kind", "package",
            }  # fmt: skip
    [ok] = agents["ops-current"]["apps"]
    assert (ok["installed"], ok["desired"], ok["newest"], ok["state"]) == (
        "2.0",
        "2.0",
        "2.0",
        "running",
    )
    assert ok["reason"] == {
        "code": "up_to_date", "message": "newest on channel stable", "version": "2.0",
        "channel": "stable",
    }  # fmt: skip
    assert agents["ops-current"]["outdated"] is False
    assert agents["ops-current"]["agent_version"] == "0.1.0"
    [bad] = agents["ops-behind"]["apps"]
    assert (bad["installed"], bad["state"]) == ("1.0", "failed")
    assert bad["reason"] == {
        "code": "failed",
        "message": "2.0 was rolled back",
        "error": "2.0 was rolled back",
        "log_tail": "fatal: this build cannot start",
        "target": None,
    }
    assert bad["log_tail"] == "fatal: this build cannot start"
    assert agents["ops-behind"]["outdated"] is True
    [never] = agents["ops-silent"]["apps"]
    assert (never["installed"], never["desired"], never["state"]) == (None, "2.0", "pending")
    assert agents["ops-silent"]["last_seen"] is None
    assert never["reason"]["code"] == "never_checked_in"

    outdated = server.json("fleet", "list", "--outdated", "--group", "ops")
    assert [a["name"] for a in outdated["agents"]] == ["ops-behind", "ops-silent"]
    assert outdated["total"] == 2
    table = wide(server, "fleet", "list", "--group", "ops")
    assert "failed: 2.0 was rolled back" in table
    assert "3 of 3 agents" in table

    shown = server.json("fleet", "show", "ops-behind")
    assert shown["agent"] == agents["ops-behind"]
    assert [(r["app"], r["version"], r["outcome"]) for r in shown["reports"]] == [
        ("ops-app", "2.0", "rolled_back")
    ]
    assert shown["reports"][0]["log_tail"] == "fatal: this build cannot start"
    by_id = server.cli("fleet", "show", "--id", agents["ops-behind"]["id"])
    assert "health probe exited 3" in by_id.stdout

    assert_fails(
        server.cli("fleet", "show", "nobody", check=False),
        3,
        "no agent named 'nobody'",
        "uptend fleet list",
    )
    assert_fails(
        server.cli("fleet", "retry", "ops-current", "other-app", check=False),
        3,
        "agent ops-current has not reported app other-app",
    )
    said = server.cli("fleet", "retry", "ops-behind", "ops-app").stdout
    assert "ops-behind will retry ops-app" in said
    [command] = check_in(server, behind, [failed]).json()["commands"]
    assert (command["action"], command["app"]) == ("retry", "ops-app")
    assert f"command {command['id']}:" in said


@SQLITE_ONLY
def test_admin_commands_without_a_server_or_token_say_which(server: Fleet) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPTEND_")}
    done = subprocess.run(
        [*UPTEND, "fleet", "list"], capture_output=True, text=True, check=False, env=env
    )
    assert_fails(done, 2, "no server given", "UPTEND_SERVER")
    done = subprocess.run(
        [*UPTEND, "group", "list", "--server", server.url],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert_fails(done, 2, "no admin token given", "UPTEND_TOKEN")
