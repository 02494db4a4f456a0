"""Each app's targets live in its own delegated role; ngclient walks to it over real HTTP."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from tests.server.tuf_support import CUSTOM, client, names, serve, stage, version
from uptend.errors import ConfigError, ConflictError
from uptend.server.tuf_repo import TufRepo, app_role


@pytest.fixture
def repo(tmp_path: Path) -> TufRepo:
    return TufRepo.create(tmp_path / "repo")


@pytest.fixture
def url(repo: TufRepo) -> Iterator[str]:
    with serve(repo.root) as base:
        yield base


def signed(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())["signed"]
    return data


def snapshot_meta(repo: TufRepo) -> dict[str, int]:
    ts = signed(repo.metadata_dir / "timestamp.json")
    snap = signed(repo.metadata_dir / f"{ts['meta']['snapshot.json']['version']}.snapshot.json")
    return {name: meta["version"] for name, meta in snap["meta"].items()}


def key(repo_root: Path, name: str) -> CryptoSigner:
    return CryptoSigner(
        load_pem_private_key((repo_root / "keys" / f"{name}.pem").read_bytes(), None)
    )


def test_apps_get_their_own_roles_and_a_client_fetches_only_its_own(
    repo: TufRepo, url: str, tmp_path: Path
) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"demo 1"), CUSTOM)
    repo.add_target("other/1.0/b", stage(tmp_path, b"other 1"), CUSTOM)
    repo.add_target("demo/2.0/c", stage(tmp_path, b"demo 2"), CUSTOM)
    assert snapshot_meta(repo) == {"targets.json": 3, "app.demo.json": 2, "app.other.json": 1}
    top = signed(repo.metadata_dir / "3.targets.json")
    assert top["targets"] == {}
    roles = {r["name"]: r for r in top["delegations"]["roles"]}
    assert roles["app.demo"]["paths"] == ["demo/*/*"]
    assert roles["app.demo"]["terminating"] is True
    assert roles["app.demo"]["keyids"] == [key(repo.root, "releases").public_key.keyid]
    assert list(top["delegations"]["keys"]) == roles["app.demo"]["keyids"]
    assert repo.target_names() == ["demo/1.0/a", "demo/2.0/c", "other/1.0/b"]
    assert repo.has_target("other/1.0/b")
    assert not repo.has_target("other/2.0/b")

    cache = tmp_path / "client"
    updater = client(repo, url, cache)
    info = updater.get_targetinfo("demo/2.0/c")
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == b"demo 2"
    assert updater.get_targetinfo("demo/1.0/a") is not None
    assert updater.get_targetinfo("demo/3.0/a") is None
    assert "app.other.json" not in names(cache)  # never needed, never fetched
    assert version(cache / "app.demo.json") == 2
    info = updater.get_targetinfo("other/1.0/b")
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == b"other 1"


def test_a_publish_writes_only_its_apps_role_snapshot_and_timestamp(
    repo: TufRepo, tmp_path: Path
) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    repo.add_target("other/1.0/b", stage(tmp_path, b"b"), CUSTOM)
    md = repo.metadata_dir
    before = {p.name: p.stat().st_mtime_ns for p in md.iterdir()}
    repo.add_target("other/2.0/c", stage(tmp_path, b"c"), CUSTOM)
    after = {p.name: p.stat().st_mtime_ns for p in md.iterdir()}
    assert sorted(after.keys() - before.keys()) == ["2.app.other.json", "4.snapshot.json"]
    assert [n for n in before if after.get(n) != before[n]] == ["timestamp.json"]


@pytest.mark.parametrize("app", ["root", "targets", "snapshot", "timestamp", "app", "app-demo"])
def test_apps_named_like_roles_get_distinct_files(
    repo: TufRepo, url: str, tmp_path: Path, app: str
) -> None:
    name = f"{app}/1.0/{app}-1.0.tar.gz"
    repo.add_target(name, stage(tmp_path, app.encode()), CUSTOM)
    assert version(repo.metadata_dir / f"1.{app_role(app)}.json") == 1
    cache = tmp_path / "client"
    updater = client(repo, url, cache)
    info = updater.get_targetinfo(name)
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == app.encode()
    assert f"app.{app}.json" in names(cache)
    for role in ("root", "timestamp", "snapshot", "targets"):  # the client's own files intact
        cached = cache / f"{role}.json"
        assert Metadata.from_bytes(cached.read_bytes()).signed.type == role
    assert client(repo, url, cache).get_targetinfo(name) is not None  # and on the next run


def forge(repo: TufRepo, role: str, name: str) -> None:
    """Add target `name` to `role` and publish it, signing every file with the real keys."""
    md_dir = repo.metadata_dir
    versions = snapshot_meta(repo)
    ts = Metadata[Timestamp].from_bytes((md_dir / "timestamp.json").read_bytes())
    snap_path = md_dir / f"{ts.signed.snapshot_meta.version}.snapshot.json"
    snap = Metadata[Snapshot].from_bytes(snap_path.read_bytes())
    md = Metadata[Targets].from_bytes(
        (md_dir / f"{versions[f'{role}.json']}.{role}.json").read_bytes()
    )
    md.signed.targets[name] = TargetFile.from_data(name, b"forged")
    md.signed.version += 1
    md.sign(key(repo.root, "releases"))
    (md_dir / f"{md.signed.version}.{role}.json").write_bytes(md.to_bytes())
    snap.signed.meta[f"{role}.json"] = MetaFile(md.signed.version)
    snap.signed.version += 1
    snap.sign(key(repo.root, "snapshot"))
    (md_dir / f"{snap.signed.version}.snapshot.json").write_bytes(snap.to_bytes())
    ts.signed.snapshot_meta = MetaFile(snap.signed.version)
    ts.signed.version += 1
    ts.sign(key(repo.root, "timestamp"))
    (md_dir / "timestamp.json").write_bytes(ts.to_bytes())


def test_an_apps_role_cannot_vouch_for_another_app(repo: TufRepo, url: str, tmp_path: Path) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    repo.add_target("other/1.0/b", stage(tmp_path, b"b"), CUSTOM)
    forge(repo, "app.demo", "other/6.6/evil")
    forge(repo, "app.demo", "demo/7.0/fine")  # the same path, within its own app: accepted
    updater = client(repo, url, tmp_path / "client")
    assert updater.get_targetinfo("demo/7.0/fine") is not None
    assert updater.get_targetinfo("other/6.6/evil") is None  # terminating, paths demo/*/*


# -- repositories made before delegations --------------------------------------------------


def make_old_repo(root: Path) -> Path:
    """A repository as `server init` and one publish made it before per-app roles.

    The target sits in the top-level targets role, and there is no releases key.
    """
    TufRepo.create(root)
    (root / "keys" / "releases.pem").unlink()
    md_dir = root / "metadata"
    name = "demo/1.0/demo-1.0.tar.gz"
    artifact = b"old demo 1.0"
    targets = Metadata[Targets].from_bytes((md_dir / "1.targets.json").read_bytes())
    target = TargetFile.from_data(name, artifact, ["sha256"])
    target.unrecognized_fields["custom"] = CUSTOM
    targets.signed.targets[name] = target
    targets.signed.version = 2
    targets.sign(key(root, "targets"))
    (md_dir / "2.targets.json").write_bytes(targets.to_bytes())
    dest = root / "targets" / target.get_prefixed_paths()[0]
    dest.parent.mkdir(parents=True)
    dest.write_bytes(artifact)
    snap = Metadata[Snapshot].from_bytes((md_dir / "1.snapshot.json").read_bytes())
    snap.signed.meta["targets.json"] = MetaFile(2)
    snap.signed.version = 2
    snap.sign(key(root, "snapshot"))
    (md_dir / "2.snapshot.json").write_bytes(snap.to_bytes())
    ts = Metadata[Timestamp].from_bytes((md_dir / "timestamp.json").read_bytes())
    ts.signed.snapshot_meta = MetaFile(2)
    ts.signed.version = 2
    ts.sign(key(root, "timestamp"))
    (md_dir / "timestamp.json").write_bytes(ts.to_bytes())
    return root


def test_a_repository_made_before_delegations_keeps_working(tmp_path: Path) -> None:
    root = make_old_repo(tmp_path / "repo")
    old = "demo/1.0/demo-1.0.tar.gz"
    repo = TufRepo.open(root)
    assert not (root / "keys" / "releases.pem").exists()  # not generated until needed
    assert repo.target_names() == [old]
    with serve(root) as url:
        cache = tmp_path / "client"
        assert client(repo, url, cache).get_targetinfo(old) is not None  # before the change
        with pytest.raises(ConflictError, match="already published"):
            repo.add_target(old, stage(tmp_path, b"again"), CUSTOM)

        repo.add_target("demo/2.0/demo-2.0.tar.gz", stage(tmp_path, b"new demo 2.0"), CUSTOM)
        pem = root / "keys" / "releases.pem"
        assert pem.stat().st_mode & 0o777 == 0o600
        top = signed(root / "metadata" / "3.targets.json")
        assert list(top["targets"]) == [old]  # the old target stays where it was
        assert [r["name"] for r in top["delegations"]["roles"]] == ["app.demo"]
        assert repo.target_names() == [old, "demo/2.0/demo-2.0.tar.gz"]

        for updater in (client(repo, url, cache), client(repo, url, tmp_path / "fresh")):
            for name, content in (
                (old, b"old demo 1.0"),
                ("demo/2.0/demo-2.0.tar.gz", b"new demo 2.0"),
            ):
                info = updater.get_targetinfo(name)
                assert info is not None
                assert Path(updater.download_target(info)).read_bytes() == content

        reopened = TufRepo.open(root)  # now with the generated key
        assert reopened.refresh_expiring(datetime.now(UTC) + timedelta(days=200)) is True
        assert list(signed(root / "metadata" / "4.targets.json")["targets"]) == [old]
        assert version(root / "metadata" / "2.app.demo.json") == 2
        assert client(reopened, url, cache).get_targetinfo(old) is not None


def test_open_refuses_a_missing_or_foreign_releases_key(repo: TufRepo, tmp_path: Path) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    pem = repo.root / "keys" / "releases.pem"
    other = TufRepo.create(tmp_path / "other")
    pem.write_bytes((other.root / "keys" / "releases.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"releases\.pem is not the releases key"):
        TufRepo.open(repo.root)
    pem.unlink()
    with pytest.raises(ConfigError, match=r"releases\.pem is missing"):
        TufRepo.open(repo.root)


def test_a_bad_app_role_does_not_stop_the_timestamp(repo: TufRepo, tmp_path: Path) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    repo.add_target("other/1.0/b", stage(tmp_path, b"b"), CUSTOM)
    (repo.metadata_dir / "1.app.other.json").write_text("{}")
    before = version(repo.metadata_dir / "timestamp.json")
    now = datetime.now(UTC) + timedelta(hours=13)  # the timestamp is due
    with pytest.raises(ConfigError, match=r"1\.app\.other\.json"):
        repo.refresh_expiring(now)
    assert version(repo.metadata_dir / "timestamp.json") == before + 1
    assert (repo.metadata_dir / "1.app.other.json").read_text() == "{}"  # left alone
