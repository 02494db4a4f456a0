"""Fixtures for the TUF session and download tests: a live signed repository, a cache dir."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.tuf_repo import DATA, NAME
from tests.reposim import RepoSim


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
