"""Hostile input through real HTTP: each test is one attack on a host that runs demo 1.0.

Every test asserts (a) the agent refuses, (b) the reason reaches the server (a report in
`uptend fleet show HOST --json`, and the app's reason in `uptend fleet list --json`), and
(c) 1.0 keeps running with nothing of the bad version in `apps/demo/versions/`. The network
tests (cut download, server away) assert the opposite: the update completes.

Attacks the server's own CLI refuses to produce (archives that escape, bombs, broken
manifests, targets signed by a foreign key, a release row without a target) are made the
way a compromised server would: signing directly with `TufRepo` in this process and
writing the `releases` row straight into the server's SQLite database.

Which cases of docs/faults.md run here, which run elsewhere (attacks that need metadata no
real server serves run against tests/reposim.py in tests/agent/test_tuf_session.py and
tests/agent/test_download.py) and which cannot run at all, and why: docs/faults.md.

F41 (the state dir read-only) runs here although tests run as root, which writes through
file modes: the agent is started inside `unshare --user --mount` with a read-only bind
mount over its `state/` directory, so even root gets EROFS. It is skipped where user
namespaces are not allowed.
"""

import contextlib
import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Timestamp

from tests import userns
from tests.support.fleet import UPTEND, Fleet, Host, make_release, wait_until
from tests.support.tamper_proxy import Seen, TamperProxy
from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path
from uptend.server.tuf_repo import TufRepo

APP = "demo"
PROBATION = 0.3

# -- helpers ---------------------------------------------------------------------------------


def edit_agent_json(host: Host, **changes: Any) -> None:
    path = host.dir / "agent.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def host_on_1_0(fleet: Fleet, **agent_json: Any) -> Host:
    """A host that runs demo 1.0, polling every second; `agent_json` edits its config."""
    fleet.assign(APP)
    fleet.publish(APP, "1.0", probation=PROBATION)
    host = fleet.add_host()
    if agent_json:
        edit_agent_json(host, **agent_json)
    host.start()
    wait_until(lambda: host.running_version(APP) == "1.0", what="1.0 running")
    wait_until(
        lambda: host.journal(APP)["phase"] == "idle" and host.journal(APP)["current"] == "1.0",
        what="1.0 through probation",
    )
    return host


def follow(fleet: Fleet, channel: str) -> None:
    """Point the group's demo at `channel`: the next check-in directs its newest version."""
    fleet.cli("group", "set", "default", "--app", APP, "--channel", channel)


def publish_on(fleet: Fleet, version: str, channel: str) -> None:
    src = make_release(fleet.root / "releases", version, probation=PROBATION)
    fleet.cli("release", "publish", APP, version, str(src), "--channel", channel)


def show(fleet: Fleet, host: Host) -> dict[str, Any]:
    """What `uptend fleet show HOST --json` prints, straight from the API (polled often)."""
    response = httpx.get(
        f"{fleet.url}/api/v1/agents/{host.name}",
        headers={"Authorization": f"Bearer {fleet.admin_token}"},
        timeout=30,
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def app_row(fleet: Fleet, host: Host) -> dict[str, Any]:
    """The host's demo row as `uptend fleet list --json` shows it."""
    (row,) = (a for a in show(fleet, host)["agent"]["apps"] if a["app"] == APP)
    return row  # type: ignore[no-any-return]


def reports(fleet: Fleet, host: Host, version: str, outcome: str) -> list[dict[str, Any]]:
    return [
        r
        for r in show(fleet, host)["reports"]
        if r["version"] == version and r["outcome"] == outcome
    ]


def last_seen(fleet: Fleet, host: Host) -> str:
    return str(show(fleet, host)["agent"]["last_seen"])


def wait_checkins(fleet: Fleet, host: Host, count: int) -> None:
    """Wait for `count` more check-ins of `host` (an event, not a sleep)."""
    for _ in range(count):
        before = last_seen(fleet, host)
        wait_until(lambda b=before: last_seen(fleet, host) != b, what="a check-in")  # type: ignore[misc]


def assert_refused(fleet: Fleet, host: Host, version: str, outcome: str, says: str) -> None:
    """(a) + (b): a report and the app's reason say `says`; (c) 1.0 runs, versions/ is clean."""

    def reported() -> bool:
        return any(says in r["reason"] for r in reports(fleet, host, version, outcome))

    wait_until(reported, what=f"a {outcome!r} report of {version} saying {says!r}")
    wait_until(
        lambda: says in app_row(fleet, host)["reason"]["message"],
        what=f"fleet list reason saying {says!r}",
    )
    # ... and the operator's CLI shows the same
    cli = fleet.json("fleet", "show", host.name)
    assert any(says in r["reason"] and r["outcome"] == outcome for r in cli["reports"])
    assert any(says in a["reason"]["message"] for a in cli["agent"]["apps"])
    assert host.running_version(APP) == "1.0"
    assert host.current(APP) == "1.0"
    assert host.versions(APP) == ["1.0"]
    assert app_row(fleet, host)["installed"] == "1.0"


def artifact(fleet: Fleet, version: str) -> Path:
    (path,) = (fleet.server_dir / "tuf/targets" / APP / version).iterdir()
    return path


def add_release_row(fleet: Fleet, version: str, target: str, length: int, sha256: str) -> None:
    """What a compromised control plane can do: direct a version, with or without a target."""
    now = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with contextlib.closing(sqlite3.connect(fleet.server_dir / "uptend.db")) as db, db:
        db.execute(
            "INSERT INTO releases (app, version, channel, target, length, sha256, created_at)"
            " VALUES (?, ?, 'stable', ?, ?, ?, ?)",
            (APP, version, target, length, sha256, now),
        )
        # the server directs its channel heads, and its replicas notice by the generation
        db.execute(
            "INSERT INTO channel_heads (app, channel, version, target) VALUES (?, 'stable', ?, ?)"
            " ON CONFLICT (app, channel) DO UPDATE SET version = excluded.version,"
            " target = excluded.target",
            (APP, version, target),
        )
        db.execute("UPDATE generation SET value = value + 1")


def tar_entry(
    tar: tarfile.TarFile,
    name: str,
    data: bytes = b"",
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def release_tar(
    fleet: Fleet,
    version: str,
    extra: Callable[[tarfile.TarFile], None] = lambda _: None,
    manifest: str | None = None,
) -> Path:
    """A .tar.gz of a working release of `version`, plus whatever `extra` adds after it."""
    src = make_release(fleet.root / "releases", version, probation=PROBATION, manifest=manifest)
    path = fleet.server_dir / f"hostile-{version}.tar.gz"  # beside tuf/: add_target renames
    with tarfile.open(path, "w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar_entry(tar, f.name, f.read_bytes())
        extra(tar)
    return path


def sign_directly(fleet: Fleet, version: str, bundle: Path, unpacked_size: int = -1) -> None:
    """Sign `bundle` as demo `version` with the server's keys, bypassing publish's checks."""
    size = files = 0
    with tarfile.open(bundle, "r:gz") as tar:
        for member in tar:
            files += 1
            size += member.size if member.isreg() else 0
    custom = TargetCustom(
        app=APP,
        version=version,
        channel="stable",
        format=ArchiveFormat.TAR_GZ,
        unpacked_size=size if unpacked_size < 0 else unpacked_size,
        files=files,
    )
    name = target_path(APP, version, ArchiveFormat.TAR_GZ)
    repo = TufRepo.open(fleet.server_dir / "tuf")
    target = repo.add_target(name, bundle, custom.model_dump(mode="json"))
    add_release_row(fleet, version, name, target.length, target.hashes["sha256"])


def tuf_files(host: Host) -> dict[str, bytes]:
    root = host.dir / "tuf"
    return {
        str(p.relative_to(root)): p.readlink().as_posix().encode()
        if p.is_symlink()
        else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


@pytest.fixture
def proxy(fleet: Fleet) -> Iterator[TamperProxy]:
    with TamperProxy(fleet.url) as p:
        yield p


def via(proxy: TamperProxy) -> dict[str, str]:
    """agent.json changes that send the agent's TUF traffic through `proxy`."""
    return {
        "metadata_url": f"{proxy.url}/tuf/metadata/",
        "targets_url": f"{proxy.url}/tuf/targets/",
    }


# -- A: TUF and metadata ----------------------------------------------------------------------


def test_tampered_bundle_never_reaches_versions_dir(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    publish_on(fleet, "2.0", "next")
    bundle = artifact(fleet, "2.0")
    good = bundle.read_bytes()
    bundle.write_bytes(bytes(b ^ 0xFF for b in good))  # same length, other bytes
    follow(fleet, "next")
    assert_refused(fleet, host, "2.0", "failed", "hash mismatch")


def test_artifact_longer_than_signed_is_refused(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    publish_on(fleet, "2.0", "next")
    with artifact(fleet, "2.0").open("ab") as f:
        f.write(b"\0" * 4096)
    follow(fleet, "next")
    assert_refused(fleet, host, "2.0", "failed", "signed length")


def test_directive_for_an_unsigned_version_is_refused(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    add_release_row(fleet, "3.0", target_path(APP, "3.0", ArchiveFormat.TAR_GZ), 1, "0" * 64)
    assert_refused(fleet, host, "3.0", "refused", "3.0 is not a signed target")


def test_targets_signed_by_a_foreign_key_are_refused(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    repo = TufRepo.open(fleet.server_dir / "tuf")
    repo._signers["releases"] = CryptoSigner.generate_ed25519()  # the attacker's: signs app.demo
    sign_directly_with(repo, fleet, "2.0")
    # ngclient rejects app.demo (UnsignedMetadataError) at the lookup, which find_target reports
    # as no signed target for 2.0.
    assert_refused(fleet, host, "2.0", "refused", "2.0 is not a signed target")


def sign_directly_with(repo: TufRepo, fleet: Fleet, version: str) -> None:
    bundle = release_tar(fleet, version)
    custom = TargetCustom(
        app=APP, version=version, channel="stable", format=ArchiveFormat.TAR_GZ,
        unpacked_size=1 << 20, files=2,
    )  # fmt: skip
    name = target_path(APP, version, ArchiveFormat.TAR_GZ)
    target = repo.add_target(name, bundle, custom.model_dump(mode="json"))
    add_release_row(fleet, version, name, target.length, target.hashes["sha256"])


def write_timestamp(fleet: Fleet, change: Callable[[Timestamp], None]) -> None:
    """Re-sign the published timestamp.json with the real timestamp key after `change`."""
    tuf = fleet.server_dir / "tuf"
    key = load_pem_private_key((tuf / "keys/timestamp.pem").read_bytes(), None)
    md = Metadata[Timestamp].from_bytes((tuf / "metadata/timestamp.json").read_bytes())
    change(md.signed)
    md.sign(CryptoSigner(key))
    tmp = tuf / "metadata/.timestamp.json.attack"
    tmp.write_bytes(md.to_bytes())
    tmp.replace(tuf / "metadata/timestamp.json")


def test_frozen_timestamp_holds_back_installs_and_says_expired(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    publish_on(fleet, "2.0", "next")

    def freeze(ts: Timestamp) -> None:
        ts.version += 1
        ts.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    # The server re-signs expiring metadata only every 60 s (once at start): in time here.
    write_timestamp(fleet, freeze)
    follow(fleet, "next")
    assert_refused(fleet, host, "2.0", "refused", "metadata expired")


def test_rollback_attack_is_refused(fleet: Fleet) -> None:
    tuf_ts = fleet.server_dir / "tuf/metadata/timestamp.json"
    old = tuf_ts.read_bytes()  # version 1, before any release
    host = host_on_1_0(fleet)  # the agent has now seen version 2
    publish_on(fleet, "2.0", "next")
    tuf_ts.write_bytes(old)  # replayed: older than what the agent trusts
    follow(fleet, "next")
    assert_refused(fleet, host, "2.0", "refused", "BadVersionNumberError")


def test_endless_data_stops_at_length(fleet: Fleet, proxy: TamperProxy) -> None:
    host = host_on_1_0(fleet, **via(proxy))
    proxy.endless("/tuf/metadata/timestamp.json")
    fleet.publish(APP, "2.0", probation=PROBATION)
    assert_refused(fleet, host, "2.0", "refused", "metadata longer than allowed")
    assert proxy.requests_for("timestamp.json")[-1].fault == "endless"


def test_signed_older_version_without_a_pin_is_refused(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    publish_on(fleet, "0.9", "old")
    follow(fleet, "old")
    assert_refused(fleet, host, "0.9", "refused", "without an operator pin")


# -- B: archive and install input -------------------------------------------------------------


def _dotdot(tar: tarfile.TarFile) -> None:
    tar_entry(tar, "../../../../evil.txt", b"pwned")


def _absolute(tar: tarfile.TarFile) -> None:
    tar_entry(tar, "/tmp/uptend-hostile-absolute.txt", b"pwned")


def _symlink_out(tar: tarfile.TarFile) -> None:
    tar_entry(tar, "escape", kind=tarfile.SYMTYPE, link="../../../../..")


def _hard_link(tar: tarfile.TarFile) -> None:
    tar_entry(tar, "passwd", kind=tarfile.LNKTYPE, link="/etc/passwd")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (_dotdot, "climbs out with '..'"),
        (_absolute, "has an absolute or invalid path"),
        (_symlink_out, "is a symlink that points outside"),
        (_hard_link, "is a hard link"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_signed_archive_escaping_its_dir_is_refused(
    fleet: Fleet, extra: Callable[[tarfile.TarFile], None], says: str
) -> None:
    host = host_on_1_0(fleet)
    sign_directly(fleet, "2.0", release_tar(fleet, "2.0", extra))
    assert_refused(fleet, host, "2.0", "failed", says)
    assert_held_back(fleet, host, "2.0")
    assert not (host.dir / "evil.txt").exists()
    assert not Path("/tmp/uptend-hostile-absolute.txt").exists()


def assert_held_back(fleet: Fleet, host: Host, version: str) -> None:
    """The release is at fault: marked bad here, not downloaded again at each poll."""
    wait_until(lambda: version in host.journal(APP)["bad"], what=f"{version} marked bad")
    wait_checkins(fleet, host, 2)
    assert len(reports(fleet, host, version, "failed")) == 1
    assert app_row(fleet, host)["state"] == "failed"
    assert host.running_version(APP) == "1.0"


def test_decompression_bomb_is_capped(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    bomb = 64 << 20

    def zeros(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("bomb.bin")
        info.size = bomb
        tar.addfile(info, io.BytesIO(bytes(bomb)))

    bundle = release_tar(fleet, "2.0", zeros)
    assert bundle.stat().st_size < bomb // 100
    declared = sum(f.stat().st_size for f in (fleet.root / "releases").glob("src-2.0-*/*"))
    sign_directly(fleet, "2.0", bundle, unpacked_size=declared)
    assert_refused(fleet, host, "2.0", "failed", "archive unpacks to more than")
    assert_held_back(fleet, host, "2.0")
    assert not any((host.dir / "apps/demo/staging").iterdir())


def test_signed_release_with_invalid_manifest_is_held_back(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    sign_directly(fleet, "2.0", release_tar(fleet, "2.0", manifest='[app]\ncommand = "x"\n'))
    assert_refused(fleet, host, "2.0", "failed", "uptend.toml is invalid")
    assert_held_back(fleet, host, "2.0")


# -- preconditions ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["reboot", "command"])
def test_unmet_precondition_defers_then_update_proceeds(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    flag = tmp_path / "flag"
    check = "import os, sys; sys.exit(3 if os.path.exists(sys.argv[1]) else 0)"
    if kind == "reboot":
        host = host_on_1_0(fleet, check_reboot=True, reboot_flag=str(flag))
        says = "a reboot is pending"
    else:
        host = host_on_1_0(fleet, precondition_commands=[[sys.executable, "-c", check, str(flag)]])
        says = "exited 3"
    flag.touch()
    fleet.publish(APP, "2.0", probation=PROBATION)
    assert_refused(fleet, host, "2.0", "deferred", says)
    assert app_row(fleet, host)["state"] == "deferred"
    assert app_row(fleet, host)["reason"]["message"].startswith("deferred: ")
    wait_checkins(fleet, host, 2)
    assert len(reports(fleet, host, "2.0", "deferred")) == 1  # said once, not at every poll
    flag.unlink()
    wait_until(lambda: host.running_version(APP) == "2.0", what="2.0 once the flag is gone")
    wait_until(lambda: bool(reports(fleet, host, "2.0", "installed")), what="installed report")
    outcomes = {r["outcome"] for r in show(fleet, host)["reports"] if r["version"] == "2.0"}
    assert outcomes == {"deferred", "installed"}  # never "failed"


# -- C: network -------------------------------------------------------------------------------


def test_cut_download_resumes_with_range_and_verifies(fleet: Fleet, proxy: TamperProxy) -> None:
    host = host_on_1_0(fleet, **via(proxy))
    proxy.cut("/tuf/targets/demo/2.0/", after=300)
    fleet.publish(APP, "2.0", probation=PROBATION)
    wait_until(lambda: host.running_version(APP) == "2.0", what="2.0 running")
    seen = proxy.requests_for("/tuf/targets/demo/2.0/")
    path = seen[0].path
    assert seen == [Seen(path, None, 200, "cut"), Seen(path, "bytes=300-", 206, "")]
    staged = artifact(fleet, "2.0").read_bytes()
    assert path.endswith(hashlib.sha256(staged).hexdigest() + f".{APP}-2.0.tar.gz")
    wait_until(lambda: bool(reports(fleet, host, "2.0", "installed")), what="installed report")
    assert not reports(fleet, host, "2.0", "failed")


def test_server_away_then_back_keeps_app_running_and_converges(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    port = fleet.port
    fleet.stop_server()
    wait_until(lambda: "check-in failed" in host.log_text(), what="a failed check-in")
    assert host.running_version(APP) == "1.0"
    fleet.start_server(port=port)
    fleet.publish(APP, "2.0", probation=PROBATION)
    wait_until(lambda: host.running_version(APP) == "2.0", timeout_s=60, what="2.0 running")


# -- F: resources and environment -------------------------------------------------------------


def test_second_agent_on_the_same_data_dir_exits_and_leaves_tuf_intact(fleet: Fleet) -> None:
    host = host_on_1_0(fleet)
    wait_until(lambda: app_row(fleet, host)["installed"] == "1.0", what="1.0 reported")
    path = host.dir / "state/demo.journal"
    # the running agent drops the delivered report from its journal after that check-in
    wait_until(lambda: json.loads(path.read_bytes())["plan"]["pending"] == [], what="settled")
    before = tuf_files(host)
    journal = path.read_bytes()
    second = subprocess.run(
        [*UPTEND, "agent", "run", str(host.dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert "another uptend agent is already running" in second.stdout + second.stderr
    assert tuf_files(host) == before
    assert (host.dir / "state/demo.journal").read_bytes() == journal
    assert host.proc is not None
    assert host.proc.poll() is None
    assert host.running_version(APP) == "1.0"


def _can_bind_read_only(tmp: Path) -> bool:
    probe = tmp / "ro-probe"
    probe.mkdir()
    return userns.allows(f'mount --bind "{probe}" "{probe}" && mount -o remount,bind,ro "{probe}"')


def test_read_only_state_dir_holds_back_updates_and_is_reported(
    fleet: Fleet, tmp_path: Path
) -> None:
    if not _can_bind_read_only(tmp_path):
        pytest.skip("needs `unshare --user --mount` to make a read-only bind mount")
    host = host_on_1_0(fleet)
    assert host.stop() == 0
    fleet.publish(APP, "2.0", probation=PROBATION)
    state = host.dir / "state"
    script = f'mount --bind "{state}" "{state}" && mount -o remount,bind,ro "{state}" && exec "$@"'
    agent = [*UPTEND, "agent", "run", str(host.dir)]
    out = host.log.open("ab")
    host.proc = subprocess.Popen(
        userns.argv(script, agent),
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
    )
    out.close()
    says = "Read-only file system"
    wait_until(lambda: says in app_row(fleet, host)["reason"]["message"], what="reason reported")
    wait_checkins(fleet, host, 2)
    assert host.proc.poll() is None
    assert host.running_version(APP) == "1.0"
    assert host.versions(APP) == ["1.0"]
    app = app_row(fleet, host)
    assert (app["installed"], app["state"]) == ("1.0", "running")
