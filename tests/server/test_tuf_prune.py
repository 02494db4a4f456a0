"""Superseded metadata is deleted once no client can still be fetching it, and only then."""

import math
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Urllib3Fetcher

from tests.server.tuf_support import CUSTOM, client, names, serve, stage, updater_for, version
from uptend.server.tuf_repo import Expiry, TufRepo
from uptend.server.tuf_repo.prune import lowest, next_lowest

GRACE_S = Expiry().superseded_s


def test_lowest_ignores_roots_leftovers_and_other_files() -> None:
    names = ["1.root.json", "2.root.json", "timestamp.json", "README", ".1.snapshot.json.x"]
    names += ["4.snapshot.json", "5.snapshot.json", "6.snapshot.json"]  # 6: a leftover
    names += ["7.app.demo.json", "9.app.demo.json", "1.app.new.json"]  # app.new: not published
    current = {"snapshot": 5, "targets": 2, "app.demo": 9}
    assert lowest(names, current) == {"snapshot": 4, "app.demo": 7}


def test_next_lowest_stops_at_the_first_successor_written_after_the_cutoff() -> None:
    written = {2: 10.0, 3: 20.0, 4: 40.0, 5: 45.0}
    assert next_lowest(1, 5, written.get, cutoff=30.0) == (3, 40.0)  # 1, 2 go; 3 at cutoff 40
    assert next_lowest(1, 5, written.get, cutoff=5.0) == (1, 10.0)
    assert next_lowest(1, 5, written.get, cutoff=99.0) == (5, -math.inf)  # never the published
    assert next_lowest(5, 5, written.get, cutoff=99.0) == (5, -math.inf)
    # 2 and 4 were pruned by another process: 1 and 3 go with them; 4 stays gone
    assert next_lowest(1, 5, {3: 1.0, 5: 2.0}.get, cutoff=1.5) == (4, 2.0)
    assert next_lowest(3, 5, {4: 1.0}.get, cutoff=99.0) == (4, -math.inf)  # 5 must be there


def test_the_first_prune_of_a_process_removes_stale_temp_files(tmp_path: Path) -> None:
    repo = TufRepo.create(tmp_path / "repo")
    stale, fresh = repo.metadata_dir / ".2.snapshot.json.a1", repo.metadata_dir / ".x.b2"
    stale.write_text("killed")
    fresh.write_text("being written")
    old = datetime.now(UTC) - timedelta(seconds=GRACE_S + 60)
    os.utime(stale, (old.timestamp(), old.timestamp()))
    TufRepo.open(repo.root).refresh_expiring(datetime.now(UTC))
    assert not stale.exists()
    assert fresh.exists()


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


def test_two_instances_prune_the_directory_they_share(tmp_path: Path) -> None:
    """Each keeps its own idea of what is left; what the other deleted is simply gone."""
    no_grace = Expiry(superseded_s=0)  # each publish deletes what it superseded at once
    a = TufRepo.create(tmp_path / "repo", expiry=no_grace)
    b = TufRepo.open(a.root, expiry=no_grace)
    for i in range(6):
        (a if i % 2 else b).add_target(f"demo/{i}.0/f", stage(tmp_path, b"x"), CUSTOM)
        expected = ["1.root.json", "2.targets.json", f"{i + 1}.app.demo.json"]
        expected += [f"{i + 2}.snapshot.json", "timestamp.json"]
        assert names(a.metadata_dir) == sorted(expected)
    assert a.target_names() == b.target_names() == [f"demo/{i}.0/f" for i in range(6)]
