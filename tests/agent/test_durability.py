"""Power loss (docs/faults.md D33): the journal never names a file that is not yet durable.

A real power cut drops every write that was not fsynced. Dropping them for real needs a
filesystem that can forget (LazyFS over FUSE, or dm-flakey): neither installs from this
project's package registries, so CI cannot run it. What makes the agent safe against it is
an ordering, and that ordering is checked here on a real update: every durable write goes
through `uptend.agent.files` (plus the fsync inside `download_target`), so recording those
calls shows, for each journal save, which barriers came before it.

    journal says   must already be durable            barrier
    staging        the verified download, its name    fsync(file), fsync_dir(staging)
    activating     versions/<v> complete, its name    syncfs(unpack dir), fsync_dir(versions)
    probation      `current` -> versions/<v>          point_current_at: rename, fsync_dir
    idle (2.0)     the same                           (nothing new)
"""

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent.test_driver import facts, settle
from tests.support.fleet import Fleet, wait_until
from uptend.agent import artifacts, download, files, lookup
from uptend.agent.driver import AppDriver
from uptend.agent.layout import Layout
from uptend.agent.supervisor import Supervisor
from uptend.agent.tuf_session import TufSession
from uptend.agent.worker import in_thread
from uptend.protocol.targets import ArchiveFormat, target_path

Event = tuple[str, str]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    events: list[Event] = []
    real_write, real_fsync_dir = files.write_atomically, files.fsync_dir
    real_syncfs, real_point = files.syncfs, files.point_current_at
    real_download = download.download_target

    def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
        real_write(path, data, mode=mode)
        if path.suffix == ".journal":
            events.append(("journal", json.loads(data)["plan"]["phase"]))

    def fsync_dir(path: Path) -> None:
        real_fsync_dir(path)
        events.append(("fsync_dir", path.name))

    def syncfs(path: Path) -> None:
        real_syncfs(path)
        events.append(("syncfs", path.name))

    def point_current_at(app_dir: Path, version: str | None) -> None:
        real_point(app_dir, version)  # rename(2) + fsync of the app dir inside
        events.append(("current", str(version)))

    def download_target(*args: Any, **kwargs: Any) -> None:
        real_download(*args, **kwargs)  # returns once the file is fsynced
        events.append(("downloaded", "fsynced"))

    monkeypatch.setattr(files, "write_atomically", write_atomically)
    monkeypatch.setattr(files, "fsync_dir", fsync_dir)
    monkeypatch.setattr(files, "syncfs", syncfs)
    monkeypatch.setattr(files, "point_current_at", point_current_at)
    monkeypatch.setattr(artifacts, "download_target", download_target)
    return events


def before(events: list[Event], phase: str) -> list[Event]:
    return events[: events.index(("journal", phase))]


def last(events: list[Event], event: Event) -> int:
    return len(events) - 1 - events[::-1].index(event)


def test_every_journal_step_follows_the_barrier_for_what_it_names(
    fleet: Fleet, recorded: list[Event]
) -> None:
    fleet.assign("demo")
    fleet.publish("demo", "2.0", probation=0.2)
    host = fleet.add_host()
    layout = Layout(host.dir)
    layout.make()
    config = json.loads(layout.config.read_text())
    supervisor = Supervisor(layout)
    session = TufSession(layout.tuf_dir, config["metadata_url"], layout.trusted_root.read_bytes())
    try:
        session.refresh()
        # in_thread: the child's code in this process, so that the recorders see it
        driver = AppDriver(layout, "demo", supervisor, config["targets_url"], facts, in_thread)
        path = target_path("demo", "2.0", ArchiveFormat.TAR_GZ)
        driver.start("2.0", artifacts.record(lookup.find(session, "demo", "2.0", path)))
        settle(driver)
        assert (driver.plan.phase, driver.plan.current) == ("idle", "2.0")
        wait_until(lambda: host.running_version("demo") == "2.0", what="2.0 running")
    finally:
        supervisor.stop_all()
        session.close()

    # (probation is saved twice: entered, then with its deadline)
    journal = [phase for phase, _ in itertools.groupby(e[1] for e in recorded if e[0] == "journal")]
    assert journal == ["fetching", "staging", "activating", "probation", "idle"]
    staging, versions = layout.staging("demo").name, layout.versions("demo").name
    staged = before(recorded, "staging")
    assert ("downloaded", "fsynced") in staged
    assert last(staged, ("fsync_dir", staging)) > last(staged, ("downloaded", "fsynced"))
    activating = before(recorded, "activating")
    assert ("syncfs", "2.0.unpack") in activating
    assert last(activating, ("fsync_dir", versions)) > last(activating, ("syncfs", "2.0.unpack"))
    assert ("current", "2.0") in before(recorded, "probation")
    assert ("current", "2.0") not in before(recorded, "activating")  # intent first
