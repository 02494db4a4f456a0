"""Artifact downloads under faults and attacks: real HTTP on 127.0.0.1, no mocks.

One test per case (docs/faults.md groups A and C), each named after it, and each checks
what is on disk afterwards: the bytes kept for a resume, or no unverified staging file.
"""

import time
from pathlib import Path

import pytest

from tests.agent.tuf_repo import DATA, NAME, cached_roles, get_info, target_requests
from tests.reposim import RepoSim, Request
from uptend.agent.download import download_target, is_verified_copy
from uptend.agent.http import FetchLimits
from uptend.errors import TransientError, VerificationError

# -- happy path and network faults (docs/faults.md C20-C22) ------------------------------


def test_happy_path_downloads_and_verifies(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "staging" / "demo.partial"
    partial.parent.mkdir()
    seen: list[tuple[int, int]] = []
    s, url = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        assert info.custom == {"app": "demo", "version": "1.0"}
        download_target(info, url, partial, progress=lambda done, total: seen.append((done, total)))
        assert is_verified_copy(partial, info)
    assert partial.read_bytes() == DATA
    assert seen[-1] == (len(DATA), len(DATA))
    assert target_requests(sim) == [Request(sim.target_url_path(NAME), None)]
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}
    assert (md_dir / "root.json").is_symlink()


def test_resume_after_cut_sends_range(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        sim.cut_after_bytes = 50_000
        with pytest.raises(TransientError, match="stopped at 50000 of 200000"):
            download_target(info, url, partial)
        assert partial.stat().st_size == 50_000  # kept for the next attempt
        download_target(info, url, partial)
    assert partial.read_bytes() == DATA
    path = sim.target_url_path(NAME)
    assert target_requests(sim) == [Request(path, None), Request(path, "bytes=50000-")]


def test_server_ignoring_range_restarts_from_zero(
    sim: RepoSim, md_dir: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        sim.cut_after_bytes = 70_000
        with pytest.raises(TransientError):
            download_target(info, url, partial)
        sim.ignore_range = True
        download_target(info, url, partial)
    assert partial.read_bytes() == DATA  # not 70 000 old bytes + the whole file
    assert [r.range for r in target_requests(sim)] == [None, "bytes=70000-"]


def test_416_restarts_from_zero(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        sim.cut_after_bytes = 10_000
        with pytest.raises(TransientError):
            download_target(info, url, partial)
        sim.answer_416 = True
        download_target(info, url, partial)
    assert partial.read_bytes() == DATA
    assert [r.range for r in target_requests(sim)] == [None, "bytes=10000-", None]


def test_complete_partial_is_verified_without_a_request(
    sim: RepoSim, md_dir: Path, tmp_path: Path
) -> None:
    """A crash after the last byte but before the rename costs no second download."""
    partial = tmp_path / "demo.partial"
    partial.write_bytes(DATA)
    s, url = get_info(sim, md_dir)
    with s:
        download_target(s.target(NAME), url, partial)
    assert partial.read_bytes() == DATA
    assert target_requests(sim) == []


def test_slow_drip_hits_deadline(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    with s:
        info = s.target(NAME)
        sim.drip_interval_s = 0.01  # each byte well inside the gap timeout; whole file: 30 min
        limits = FetchLimits(read_timeout_s=5.0, deadline_s=1.0)
        started = time.monotonic()
        with pytest.raises(TransientError, match="took longer than 1 s"):
            download_target(info, url, partial, limits=limits)
    assert time.monotonic() - started < 3.0
    assert 0 < partial.stat().st_size < len(DATA)  # kept: the next attempt resumes


# -- artifact attacks (docs/faults.md A3, A4) --------------------------------------------------


def test_endless_data_stops_at_length(sim: RepoSim, md_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    sim.serve_endless(sim.target_url_path(NAME))
    with s, pytest.raises(VerificationError, match="more than the signed length"):
        download_target(s.target(NAME), url, partial, limits=FetchLimits(chunk_bytes=4096))
    assert not partial.exists()


def test_longer_artifact_is_refused_from_its_content_length(
    sim: RepoSim, md_dir: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    sim.tamper(sim.target_url_path(NAME), DATA + b"payload")
    with s, pytest.raises(VerificationError, match="signed length is 200000"):
        download_target(s.target(NAME), url, partial)
    assert not partial.exists()


def test_same_length_substitution_is_a_hash_mismatch(
    sim: RepoSim, md_dir: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "demo.partial"
    s, url = get_info(sim, md_dir)
    sim.tamper(sim.target_url_path(NAME), bytes(len(DATA)))
    with s, pytest.raises(VerificationError, match=f"hash mismatch for {NAME}"):
        download_target(s.target(NAME), url, partial)
    assert not partial.exists()
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}
