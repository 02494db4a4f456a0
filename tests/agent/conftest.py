"""Fixtures: a live signed repository and a cache dir (the TUF session and download tests);
the session's agent builds and an installed agent (the self-update tests)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.tuf_repo import DATA, NAME
from tests.reposim import RepoSim
from tests.support.agent_builds import SharedBuilds
from tests.support.agent_hosts import Installed, up
from tests.support.fleet import Fleet


@pytest.fixture
def sim() -> Iterator[RepoSim]:
    with RepoSim() as s:
        s.add_target(NAME, DATA, {"app": "demo", "version": "1.0"})
        s.publish()
        yield s


@pytest.fixture
def md_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tuf"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def agent_builds(tmp_path_factory: pytest.TempPathFactory) -> SharedBuilds:
    """Real agent builds of the tree, made once per session and shared by every xdist worker."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker's base temp is a directory of the session's: share that one
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return SharedBuilds(root)


@pytest.fixture
def host(fleet: Fleet, agent_builds: SharedBuilds) -> Iterator[Installed]:
    """One installed agent on 0.1.0 through its launcher, opted in to `uptend-agent` on stable."""
    fleet.cli("group", "set", "default", "--app", "demo", "--poll-interval", "1")
    fleet.cli("group", "set", "default", "--app", "uptend-agent", "--channel", "stable")
    fleet.publish("demo", "1.0")
    h = up(fleet, agent_builds, "h1")
    yield h
    h.stop()
