"""The release repository, checked by a real python-tuf client over real HTTP on 127.0.0.1."""

import hashlib
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from tests.server.tuf_support import CUSTOM, client, names, serve, stage, tree, version
from uptend.errors import ConfigError, ConflictError
from uptend.server.tuf_repo import Expiry, TufRepo


@pytest.fixture
def repo(tmp_path: Path) -> TufRepo:
    return TufRepo.create(tmp_path / "repo")


@pytest.fixture
def url(repo: TufRepo) -> Iterator[str]:
    with serve(repo.root) as base:
        yield base


def test_create_then_open_round_trip(repo: TufRepo) -> None:
    assert names(repo.metadata_dir) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "timestamp.json",
    ]
    opened = TufRepo.open(repo.root)
    assert opened.initial_root() == (repo.metadata_dir / "1.root.json").read_bytes()
    assert opened.root_fingerprint() == hashlib.sha256(repo.initial_root()).hexdigest()
    assert opened.root_fingerprint() == repo.root_fingerprint()
    assert opened.target_names() == []
    expires_in = opened.timestamp_expires() - datetime.now(UTC)
    assert timedelta(hours=23) < expires_in <= timedelta(days=1)
    assert json.loads(repo.initial_root())["signed"]["consistent_snapshot"] is True


def test_private_keys_are_0600_in_a_0700_dir(repo: TufRepo) -> None:
    keys = repo.root / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    pems = sorted(keys.iterdir())
    expected = ["releases.pem", "root.pem", "snapshot.pem", "targets.pem", "timestamp.pem"]
    assert [p.name for p in pems] == expected
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pems)
    assert all(p.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----") for p in pems)


def test_create_refuses_a_non_empty_dir_and_leaves_it_alone(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "precious").write_text("keep me")
    with pytest.raises(ConflictError, match="not empty"):
        TufRepo.create(tmp_path / "repo")
    assert tree(tmp_path) == {"repo/precious": b"keep me"}


def test_create_accepts_an_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    TufRepo.create(tmp_path / "repo")
    assert (tmp_path / "repo" / "metadata" / "timestamp.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temp dir left behind


def test_open_missing_dir_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere/metadata/1\.root\.json is missing"):
        TufRepo.open(tmp_path / "nowhere")


def test_open_corrupt_timestamp_names_the_file(repo: TufRepo) -> None:
    (repo.metadata_dir / "timestamp.json").write_text("<html>oops</html>")
    with pytest.raises(ConfigError, match=r"timestamp\.json is unreadable or corrupt"):
        TufRepo.open(repo.root)


def test_open_refuses_a_key_that_root_does_not_list(repo: TufRepo, tmp_path: Path) -> None:
    other = TufRepo.create(tmp_path / "other")
    (repo.root / "keys" / "targets.pem").write_bytes((other.root / "keys/targets.pem").read_bytes())
    with pytest.raises(ConfigError, match=r"keys/targets\.pem is not a targets key"):
        TufRepo.open(repo.root)


def test_open_refuses_metadata_signed_by_another_key(repo: TufRepo, tmp_path: Path) -> None:
    other = TufRepo.create(tmp_path / "other")
    forged = (other.metadata_dir / "timestamp.json").read_bytes()
    (repo.metadata_dir / "timestamp.json").write_bytes(forged)
    with pytest.raises(ConfigError, match="not signed by its timestamp key"):
        TufRepo.open(repo.root)


def test_published_target_verifies_with_ngclient(repo: TufRepo, url: str, tmp_path: Path) -> None:
    content = b"demo 1.0 bundle bytes"
    staged = stage(tmp_path, content)
    target = repo.add_target("demo/1.0/demo-1.0.tar.gz", staged, CUSTOM)

    sha = hashlib.sha256(content).hexdigest()
    assert target.length == len(content)
    assert target.hashes == {"sha256": sha}
    assert not staged.exists()
    assert (repo.targets_dir / "demo" / "1.0" / f"{sha}.demo-1.0.tar.gz").read_bytes() == content
    assert repo.has_target("demo/1.0/demo-1.0.tar.gz")
    assert repo.target_names() == ["demo/1.0/demo-1.0.tar.gz"]

    updater = client(repo, url, tmp_path / "client")
    info = updater.get_targetinfo("demo/1.0/demo-1.0.tar.gz")
    assert info is not None
    assert info.custom == CUSTOM
    assert Path(updater.download_target(info)).read_bytes() == content
    assert updater.get_targetinfo("demo/2.0/demo-2.0.tar.gz") is None


def test_a_publish_bumps_the_app_role_snapshot_and_timestamp(repo: TufRepo, tmp_path: Path) -> None:
    md = repo.metadata_dir
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)  # first: delegates to app.demo
    assert version(md / "2.targets.json") == 2
    assert version(md / "1.app.demo.json") == 1
    assert version(md / "2.snapshot.json") == 2
    assert version(md / "timestamp.json") == 2
    snapshot = json.loads((md / "2.snapshot.json").read_bytes())["signed"]
    assert snapshot["meta"] == {"targets.json": {"version": 2}, "app.demo.json": {"version": 1}}

    repo.add_target("demo/2.0/b", stage(tmp_path, b"b"), CUSTOM)  # later: top-level untouched
    assert not (md / "3.targets.json").exists()
    assert version(md / "2.app.demo.json") == 2
    snapshot = json.loads((md / "3.snapshot.json").read_bytes())["signed"]
    assert snapshot["meta"] == {"targets.json": {"version": 2}, "app.demo.json": {"version": 2}}
    assert version(md / "timestamp.json") == 3


def test_duplicate_add_is_a_conflict_and_changes_nothing(repo: TufRepo, tmp_path: Path) -> None:
    repo.add_target("demo/1.0/demo-1.0.tar.gz", stage(tmp_path, b"first"), CUSTOM)
    before = tree(repo.root)
    again = stage(tmp_path, b"second", "again")
    with pytest.raises(ConflictError, match="already published"):
        repo.add_target("demo/1.0/demo-1.0.tar.gz", again, CUSTOM)
    assert tree(repo.root) == before
    assert again.read_bytes() == b"second"


@pytest.mark.parametrize(
    "name",
    [
        *("../escape/f", "/abs/file", "demo//file", "demo/./f", "a\\b/c/d", ""),
        *("demo/1.0", "a/b/c/d", "Demo/1.0/f", "de*mo/1.0/f", "demo/1.0/f\0"),
    ],
)
def test_unsafe_target_names_are_refused(repo: TufRepo, tmp_path: Path, name: str) -> None:
    before = tree(repo.root)
    staged = stage(tmp_path, b"x")
    with pytest.raises(ConfigError, match="invalid target name"):
        repo.add_target(name, staged, CUSTOM)
    assert tree(repo.root) == before
    assert staged.exists()


def test_staged_file_on_another_filesystem_is_refused(repo: TufRepo) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == repo.root.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than tmp_path")
    before = tree(repo.root)
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
        f.write(b"x")
        f.flush()
        with pytest.raises(ConfigError, match="not on the filesystem"):
            repo.add_target("demo/1.0/a", Path(f.name), CUSTOM)
        assert Path(f.name).exists()
    assert tree(repo.root) == before


def test_refresh_expiring_resigns_only_when_due(repo: TufRepo, url: str, tmp_path: Path) -> None:
    md = repo.metadata_dir
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)  # targets 2, app.demo 1
    cache = tmp_path / "client"
    assert client(repo, url, cache).get_targetinfo("demo/1.0/a") is not None
    now = datetime.now(UTC)

    assert repo.refresh_expiring(now) is False
    assert repo.refresh_expiring(now + timedelta(hours=11)) is False
    assert version(md / "timestamp.json") == 2

    assert repo.refresh_expiring(now + timedelta(hours=13)) is True  # timestamp half expired
    assert version(md / "timestamp.json") == 3
    assert not (md / "3.snapshot.json").exists()
    assert repo.timestamp_expires() == (now + timedelta(hours=37)).replace(microsecond=0)
    assert repo.refresh_expiring(now + timedelta(hours=13)) is False
    client(repo, url, cache)
    assert version(cache / "timestamp.json") == 3

    assert repo.refresh_expiring(now + timedelta(days=4)) is True  # snapshot half expired
    assert version(md / "3.snapshot.json") == 3
    assert version(md / "timestamp.json") == 4
    assert not (md / "3.targets.json").exists()
    assert not (md / "2.app.demo.json").exists()
    client(repo, url, cache)
    assert version(cache / "snapshot.json") == 3

    # targets and the app's role half expired: both re-signed, in one new snapshot
    assert repo.refresh_expiring(now + timedelta(days=200)) is True
    assert version(md / "3.targets.json") == 3
    app_role = Metadata.from_bytes((md / "2.app.demo.json").read_bytes()).signed
    assert app_role.version == 2
    assert app_role.expires == (now + timedelta(days=200 + 365)).replace(microsecond=0)
    assert version(md / "4.snapshot.json") == 4
    assert version(md / "timestamp.json") == 5
    updater = client(repo, url, cache)
    assert updater.get_targetinfo("demo/1.0/a") is not None
    assert version(cache / "targets.json") == 3
    assert version(cache / "app.demo.json") == 2


def test_two_instances_publish_alternately(repo: TufRepo, url: str, tmp_path: Path) -> None:
    other = TufRepo.open(repo.root)
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    other.add_target("demo/2.0/b", stage(tmp_path, b"b"), CUSTOM)  # must see a's publish
    repo.add_target("demo/3.0/c", stage(tmp_path, b"c"), CUSTOM)  # must see b's publish
    with pytest.raises(ConflictError):
        other.add_target("demo/3.0/c", stage(tmp_path, b"c2"), CUSTOM)
    expected = ["demo/1.0/a", "demo/2.0/b", "demo/3.0/c"]
    assert repo.target_names() == other.target_names() == expected
    assert version(repo.metadata_dir / "timestamp.json") == 4
    updater = client(repo, url, tmp_path / "client")
    for name in expected:
        info = updater.get_targetinfo(name)
        assert info is not None
        assert Path(updater.download_target(info)).read_bytes() == name[-1].encode()


def test_concurrent_publishers_lose_no_update(repo: TufRepo, url: str, tmp_path: Path) -> None:
    names = [f"demo/{i}.0/demo-{i}.0.tar.gz" for i in range(12)]
    instances = [TufRepo.open(repo.root) for _ in names]
    staged = [stage(tmp_path, n.encode(), f"s{i}") for i, n in enumerate(names)]
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(lambda i: instances[i].add_target(names[i], staged[i], CUSTOM), range(12)))
    assert repo.target_names() == sorted(names)
    assert version(repo.metadata_dir / "timestamp.json") == 1 + len(names)
    updater = client(repo, url, tmp_path / "client")
    assert all(updater.get_targetinfo(n) is not None for n in names)


def test_leftovers_of_a_crashed_publish_are_not_published(
    repo: TufRepo, url: str, tmp_path: Path
) -> None:
    """A publish killed before timestamp.json leaves files that nothing refers to."""
    (repo.metadata_dir / "2.targets.json").write_text("half a publish")
    (repo.metadata_dir / "1.app.demo.json").write_text("{")
    (repo.metadata_dir / "2.snapshot.json").write_text("")
    reopened = TufRepo.open(repo.root)
    assert reopened.target_names() == []
    reopened.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    assert version(repo.metadata_dir / "2.targets.json") == 2
    assert version(repo.metadata_dir / "1.app.demo.json") == 1
    assert version(repo.metadata_dir / "2.snapshot.json") == 2
    info = client(repo, url, tmp_path / "client").get_targetinfo("demo/1.0/a")
    assert info is not None


def test_short_expiry_is_honoured(tmp_path: Path) -> None:
    expiry = Expiry(timestamp_s=600, snapshot_s=3600, targets_s=7200)
    repo = TufRepo.create(tmp_path / "repo", expiry=expiry)
    md = repo.metadata_dir
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)  # targets 2, app.demo 1
    now = datetime.now(UTC)
    assert repo.timestamp_expires() <= now + timedelta(seconds=600)
    assert repo.refresh_expiring(now + timedelta(seconds=301)) is True
    assert not (md / "3.snapshot.json").exists()
    assert repo.refresh_expiring(now + timedelta(seconds=1801)) is True
    assert (md / "3.snapshot.json").exists()
    assert not (md / "2.app.demo.json").exists()
    assert repo.refresh_expiring(now + timedelta(seconds=3601)) is True  # the targets roles
    assert version(md / "2.app.demo.json") == 2
    assert version(md / "3.targets.json") == 3
    snapshot = json.loads((md / "4.snapshot.json").read_bytes())["signed"]
    assert snapshot["meta"] == {"targets.json": {"version": 3}, "app.demo.json": {"version": 2}}
    assert repo.target_names() == ["demo/1.0/a"]
