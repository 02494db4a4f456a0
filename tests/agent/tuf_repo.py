"""A signed repository with one target, and what the TUF session and download tests read.

The `sim` and `md_dir` fixtures that go with it are in tests/agent/conftest.py.
"""

import os
from pathlib import Path

from tuf.api.metadata import Metadata

from tests.reposim import RepoSim, Request
from uptend.agent.download import target_url
from uptend.agent.tuf_session import TufSession

NAME = "demo/1.0/demo-1.0.tar.gz"
DATA = os.urandom(200_000)


def session(sim: RepoSim, md_dir: Path, anchor: bytes | None = None) -> TufSession:
    return TufSession(md_dir, sim.metadata_url, anchor or sim.root_bytes(1))


def target_requests(sim: RepoSim) -> list[Request]:
    return [r for r in sim.requests if r.path.startswith("/targets/")]


def cached_roles(md_dir: Path) -> dict[str, int]:
    """Role -> version of what ngclient kept in the metadata cache (non-versioned names)."""
    found = {}
    for path in md_dir.glob("*.json"):
        md = Metadata.from_file(str(path))
        found[path.stem] = md.signed.version
    return found


def get_info(sim: RepoSim, md_dir: Path) -> tuple[TufSession, str]:
    s = session(sim, md_dir)
    s.refresh()
    return s, target_url(sim.targets_url, s.target(NAME))
