"""Key rotation and the offline mode with a real server and real agents enrolled before.

Every key is rotated while the server runs (`uptend keys rotate`, on its data dir) and a
release published after each rotation reaches every agent: they follow the root chain from
the root they enrolled with. The attacks hold a rotated-out key, or the offline mode's
server keys, plus the online snapshot and timestamp keys and the database (a compromised
server): they forge metadata in the served directory and direct the agents to it, and the
agents refuse.
"""

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from tests.support.fleet import Fleet, Host, make_release, wait_until
from uptend import archive
from uptend.protocol.targets import ArchiveFormat, TargetCustom, target_path
from uptend.server.tuf_repo.signed import swap_delegated_key

APP = "demo"


def key(path: Path) -> CryptoSigner:
    return CryptoSigner(load_pem_private_key(path.read_bytes(), None))


def start_hosts(fleet: Fleet, count: int) -> list[Host]:
    hosts = [fleet.add_host() for _ in range(count)]
    for host in hosts:
        host.start()
    return hosts


def all_run(hosts: list[Host], version: str) -> None:
    for host in hosts:
        wait_until(
            lambda h=host: h.running_version(APP) == version,  # type: ignore[misc]
            timeout_s=60,
            what=f"{host.name} running {version}",
        )


def trusted_root_version(host: Host) -> int:
    data = json.loads((host.dir / "state" / "trusted-root").read_bytes())
    return int(data["signed"]["version"])


def test_every_key_rotates_under_three_enrolled_agents(fleet: Fleet) -> None:
    fleet.assign(APP)
    fleet.publish(APP, "1.0", probation=0.2)
    hosts = start_hosts(fleet, 3)
    all_run(hosts, "1.0")
    for n, name in enumerate(["root", "targets", "releases", "timestamp", "snapshot"], start=2):
        old = key(fleet.server_dir / "tuf" / "keys" / f"{name}.pem").public_key.keyid
        done = json.loads(fleet.cli("keys", "rotate", name, str(fleet.server_dir), "--json").stdout)
        assert done["old_keyid"] == old != done["new_keyid"]
        fleet.publish(APP, f"{n}.0", probation=0.2)
        all_run(hosts, f"{n}.0")
    shown = fleet.json("keys", "show", str(fleet.server_dir))
    assert shown["offline"] is False
    assert {k["key"]: k["where"] for k in shown["keys"]} == dict.fromkeys(
        ["root", "targets", "snapshot", "timestamp", "releases"], "server"
    )
    assert len(shown["retired"]) == 5
    root_version = next(k["version"] for k in shown["keys"] if k["key"] == "root")
    assert root_version == 5  # root, targets, timestamp, snapshot each wrote a root
    for host in hosts:
        assert trusted_root_version(host) == root_version  # the new anchor, kept by each


def forge(fleet: Fleet, version: str, releases: CryptoSigner, targets: CryptoSigner | None) -> None:
    """Serve demo `version` signed by `releases` (delegated by `targets` if given), directed.

    It is what a holder of those keys and of the server (its online keys, its database) can
    make agents fetch: snapshot and timestamp are signed by the server's real keys.
    """
    tuf = fleet.server_dir / "tuf"
    md_dir = tuf / "metadata"

    def read(name: str) -> Metadata[Any]:
        return Metadata.from_bytes((md_dir / name).read_bytes())

    def write(name: str, md: Metadata[Any], signer: CryptoSigner) -> None:
        md.signed.version += 1
        md.sign(signer)
        stem = "timestamp.json" if name == "timestamp" else f"{md.signed.version}.{name}.json"
        (md_dir / stem).write_bytes(md.to_bytes())

    ts: Metadata[Timestamp] = read("timestamp.json")
    snap: Metadata[Snapshot] = read(f"{ts.signed.snapshot_meta.version}.snapshot.json")
    top: Metadata[Targets] = read(f"{snap.signed.meta['targets.json'].version}.targets.json")
    role: Metadata[Targets] = read(f"{snap.signed.meta['app.demo.json'].version}.app.demo.json")
    bundle = fleet.root / f"forged-{version}.tar.gz"
    archive.pack_dir(make_release(fleet.root / "releases", version), bundle)
    name = target_path(APP, version, ArchiveFormat.TAR_GZ)
    target = TargetFile.from_file(name, str(bundle), ["sha256"])
    custom = TargetCustom(app=APP, version=version, channel="stable",
                          format=ArchiveFormat.TAR_GZ, unpacked_size=1 << 20, files=2)  # fmt: skip
    target.unrecognized_fields["custom"] = custom.model_dump(mode="json")
    dest = tuf / "targets" / target.get_prefixed_paths()[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    bundle.replace(dest)
    role.signed.targets[name] = target
    write("app.demo", role, releases)
    snap.signed.meta["app.demo.json"] = MetaFile(role.signed.version)
    if targets is not None:
        swap_delegated_key(top.signed, releases.public_key)
        write("targets", top, targets)
        snap.signed.meta["targets.json"] = MetaFile(top.signed.version)
    write("snapshot", snap, key(tuf / "keys" / "snapshot.pem"))
    ts.signed.snapshot_meta = MetaFile(snap.signed.version)
    write("timestamp", ts, key(tuf / "keys" / "timestamp.pem"))
    direct(fleet, version, name, target)


def direct(fleet: Fleet, version: str, name: str, target: TargetFile) -> None:
    """The compromised control plane's part: make `version` the channel's head."""
    now = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with contextlib.closing(sqlite3.connect(fleet.server_dir / "uptend.db")) as db, db:
        db.execute(
            "INSERT INTO releases (app, version, channel, target, length, sha256, created_at)"
            " VALUES (?, ?, 'stable', ?, ?, ?, ?)",
            (APP, version, name, target.length, target.hashes["sha256"], now),
        )
        db.execute(
            "UPDATE channel_heads SET version = ?, target = ? WHERE app = ? AND channel = 'stable'",
            (version, name, APP),
        )
        db.execute("UPDATE generation SET value = value + 1")


def refused(fleet: Fleet, hosts: list[Host], version: str, running: str, says: str) -> None:
    """Each host reports `version` refused saying `says`, and still runs only `running`."""
    for host in hosts:

        def reported(h: Host = host) -> bool:
            response = httpx.get(
                f"{fleet.url}/api/v1/agents/{h.name}",
                headers={"Authorization": f"Bearer {fleet.admin_token}"},
                timeout=30,
            )
            reports = response.json()["reports"]
            return any(
                r["version"] == version and r["outcome"] == "refused" and says in r["reason"]
                for r in reports
            )

        wait_until(reported, timeout_s=60, what=f"{host.name} refusing {version}")
        assert host.running_version(APP) == running
        assert version not in host.versions(APP)
        assert not host.staging(APP)


def test_metadata_signed_by_rotated_out_keys_is_refused(fleet: Fleet) -> None:
    fleet.assign(APP)
    fleet.publish(APP, "1.0", probation=0.2)
    hosts = start_hosts(fleet, 3)
    all_run(hosts, "1.0")
    keys = fleet.server_dir / "tuf" / "keys"
    old_targets, old_releases = key(keys / "targets.pem"), key(keys / "releases.pem")
    fleet.cli("keys", "rotate", "targets", str(fleet.server_dir))
    fleet.cli("keys", "rotate", "releases", str(fleet.server_dir))
    fleet.publish(APP, "2.0", probation=0.2)
    all_run(hosts, "2.0")  # every agent trusts the new keys now

    forge(fleet, "6.6", releases=old_releases, targets=None)  # the old releases key alone
    refused(fleet, hosts, "6.6", "2.0", "is not a signed target")
    attacker = CryptoSigner.generate_ed25519()
    forge(fleet, "6.7", releases=attacker, targets=old_targets)  # the old targets key
    refused(fleet, hosts, "6.7", "2.0", "UnsignedMetadataError")


def test_offline_keys_sign_on_the_workstation_and_the_server_cannot(fleet: Fleet) -> None:
    workstation = fleet.root / "workstation-keys"
    moved = fleet.json("keys", "export-targets", str(fleet.server_dir), str(workstation))
    assert sorted(Path(p).name for p in moved["moved"]) == [
        "releases.pem",
        "root.pem",
        "targets.pem",
    ]
    server_keys = sorted(p.name for p in (fleet.server_dir / "tuf" / "keys").glob("*.pem"))
    assert server_keys == ["snapshot.pem", "timestamp.pem"]
    shown = fleet.json("keys", "show", str(fleet.server_dir))
    assert shown["offline"] is True
    where = {k["key"]: k["where"] for k in shown["keys"]}
    assert where == {
        "root": "missing",
        "targets": "missing",
        "snapshot": "server",
        "timestamp": "server",
    }  # fmt: skip  (no app has a role yet)

    fleet.assign(APP)
    hosts = start_hosts(fleet, 2)
    for version in ("1.0", "2.0"):  # 1.0 is the app's first release: targets is signed too
        src = make_release(fleet.root / "releases", version, probation=0.2)
        out = fleet.root / f"signed-{version}"
        signed = fleet.json(
            "release", "sign", APP, version, str(src), "--keys", str(workstation),
            "--out", str(out), "--server", fleet.url,
        )  # fmt: skip
        assert signed["roles"] == (["app.demo", "targets"] if version == "1.0" else ["app.demo"])
        fleet.cli("release", "publish", APP, version, str(out))
        all_run(hosts, version)

    # The server alone cannot publish: nothing is signed, nothing is recorded.
    src = make_release(fleet.root / "releases", "3.0")
    done = fleet.cli("release", "publish", APP, "3.0", str(src), check=False)
    assert done.returncode == 2, done.stderr
    assert "release keys are offline" in done.stderr
    assert "uptend release sign" in done.stderr
    assert [r["version"] for r in fleet.json("release", "list", APP)] == ["1.0", "2.0"]
    assert "refused release demo 3.0" in fleet.server_log()
    # A signed directory replayed for another version is refused before any upload.
    replay = fleet.cli(
        "release", "publish", APP, "3.0", str(fleet.root / "signed-2.0"), check=False
    )
    assert replay.returncode == 2
    assert "holds demo 2.0, not demo 3.0" in replay.stderr

    # Compromised in this mode, the server signs with a key of its own: agents refuse it.
    forge(fleet, "3.1", releases=CryptoSigner.generate_ed25519(), targets=None)
    refused(fleet, hosts, "3.1", "2.0", "is not a signed target")
