"""Superseded metadata is deleted once no client can still be fetching it, and only then."""

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Urllib3Fetcher

from tests.server.tuf_support import CUSTOM, client, names, serve, stage, updater_for, version
from uptend.server.tuf_repo import Expiry, TufRepo
from uptend.server.tuf_repo.prune import superseded

GRACE_S = Expiry().superseded_s


def test_the_rule_keeps_roots_current_newer_and_recent_versions() -> None:
    files = {
        "1.root.json": 0.0,
        "2.root.json": 10.0,
        "timestamp.json": 50.0,
        "1.snapshot.json": 0.0,  # superseded at 10: goes
        "2.snapshot.json": 10.0,  # superseded at 40: stays (after the cutoff)
        "3.snapshot.json": 40.0,  # current
        "4.snapshot.json": 45.0,  # a killed publish's leftover: stays
        "1.app.demo.json": 0.0,  # superseded at 20 (2 is gone already): goes
        "3.app.demo.json": 20.0,  # current
        "1.app.new.json": 0.0,  # a role the snapshot does not name yet: stays
        ".3.snapshot.json.tmp1": 5.0,  # a killed write's temp file: goes
        ".4.snapshot.json.tmp2": 45.0,  # too recent to be a dead write's: stays
        "README": 0.0,
    }
    current = {"snapshot": 3, "targets": 1, "app.demo": 3}
    assert superseded(files, current, cutoff=30.0) == [
        ".3.snapshot.json.tmp1",
        "1.app.demo.json",
        "1.snapshot.json",
    ]
    assert superseded(files, current, cutoff=0.0) == []


def metadata_bytes(repo: TufRepo) -> int:
    return sum(p.stat().st_size for p in repo.metadata_dir.iterdir())


def test_metadata_on_disk_is_linear_in_releases(tmp_path: Path) -> None:
    repo = TufRepo.create(tmp_path / "repo")
    apps = [f"app{i}" for i in range(4)]
    sizes = {}
    published = 0
    for checkpoint in (8, 16, 32):
        while published < checkpoint:
            app = apps[published % len(apps)]
            repo.add_target(f"{app}/{published}.0/f", stage(tmp_path, b"x"), CUSTOM)
            published += 1
        assert len(names(repo.metadata_dir)) >= 2 * len(apps)  # within the grace: all kept
        later = datetime.now(UTC) + timedelta(seconds=GRACE_S + 60)
        assert repo.refresh_expiring(later) is False  # nothing due, but it prunes
        expected = ["1.root.json", f"{checkpoint + 1}.snapshot.json", "5.targets.json"]
        expected += [f"{checkpoint // len(apps)}.app.{app}.json" for app in apps]
        assert names(repo.metadata_dir) == sorted([*expected, "timestamp.json"])
        sizes[checkpoint] = metadata_bytes(repo)
    per_release_early = (sizes[16] - sizes[8]) / 8
    per_release_late = (sizes[32] - sizes[16]) / 16
    assert 0 < per_release_late < 1.1 * per_release_early  # a constant cost per release


def test_target_files_of_published_releases_are_never_pruned(tmp_path: Path) -> None:
    repo = TufRepo.create(tmp_path / "repo")
    published = [f"demo/{i}.0/demo-{i}.0.tar.gz" for i in range(5)]
    for i, name in enumerate(published):
        repo.add_target(name, stage(tmp_path, f"bundle {i}".encode()), CUSTOM)
    repo.refresh_expiring(datetime.now(UTC) + timedelta(days=200))  # re-signs and prunes all
    with serve(repo.root) as url:
        updater = client(repo, url, tmp_path / "client")
        for i, name in enumerate(published):
            info = updater.get_targetinfo(name)
            assert info is not None
            assert Path(updater.download_target(info)).read_bytes() == f"bundle {i}".encode()


def test_a_killed_publishs_leftovers_survive_pruning_then_get_overwritten(tmp_path: Path) -> None:
    repo = TufRepo.create(tmp_path / "repo")
    repo.add_target("demo/1.0/a", stage(tmp_path, b"a"), CUSTOM)
    md = repo.metadata_dir
    (md / "2.app.demo.json").write_text("half a publish")
    (md / "3.snapshot.json").write_text("")
    old = datetime.now(UTC) - timedelta(days=1)
    os.utime(md / "2.app.demo.json", (old.timestamp(), old.timestamp()))
    repo.refresh_expiring(datetime.now(UTC) + timedelta(seconds=GRACE_S + 60))
    assert (md / "2.app.demo.json").read_text() == "half a publish"
    repo.add_target("demo/2.0/b", stage(tmp_path, b"b"), CUSTOM)
    assert version(md / "2.app.demo.json") == 2
    assert version(md / "3.snapshot.json") == 3


class _PausingFetcher(Urllib3Fetcher):
    """Runs `after_timestamp` once, between receiving timestamp.json and fetching the rest."""

    def __init__(self, after_timestamp: Callable[[], None]) -> None:
        super().__init__()
        self._hook: Callable[[], None] | None = after_timestamp

    def _fetch(self, url: str) -> Iterator[bytes]:
        data = b"".join(super()._fetch(url))
        if url.endswith("/timestamp.json") and self._hook is not None:
            hook, self._hook = self._hook, None
            hook()
        return iter([data])


@pytest.mark.parametrize("superseded_s", [GRACE_S, 0])
def test_a_client_holding_the_previous_timestamp_still_completes(
    tmp_path: Path, superseded_s: int
) -> None:
    """The grace period is what lets it finish: with none, its snapshot is gone at once."""
    repo = TufRepo.create(tmp_path / "repo", expiry=Expiry(superseded_s=superseded_s))
    repo.add_target("demo/1.0/a", stage(tmp_path, b"1"), CUSTOM)
    cache = tmp_path / "client"
    with serve(repo.root) as url:
        assert client(repo, url, cache).get_targetinfo("demo/1.0/a") is not None
        repo.add_target("demo/2.0/a", stage(tmp_path, b"2"), CUSTOM)

        def two_more_publishes() -> None:
            repo.add_target("demo/3.0/a", stage(tmp_path, b"3"), CUSTOM)
            repo.add_target("demo/4.0/a", stage(tmp_path, b"4"), CUSTOM)

        updater = updater_for(repo, url, cache, _PausingFetcher(two_more_publishes))
        if superseded_s == 0:
            with pytest.raises(DownloadHTTPError, match="404"):
                updater.refresh()
            assert "3.snapshot.json" not in names(repo.metadata_dir)
        else:
            updater.refresh()  # with the timestamp of 2.0: snapshot 3, app.demo 2
            info = updater.get_targetinfo("demo/2.0/a")
            assert info is not None
            assert Path(updater.download_target(info)).read_bytes() == b"2"
            assert updater.get_targetinfo("demo/3.0/a") is None  # not yet, for this refresh
        assert client(repo, url, cache).get_targetinfo("demo/4.0/a") is not None  # next time
