"""`uptend tuf-client`, the tuf-conformance client contract, against a real repository on 127.0.0.1.

The contract (docs/faults.md; tuf-conformance CLIENT-CLI.md): exit 0 on full success and 1
otherwise; init makes no request; non-versioned metadata names in D; download refreshes,
goes in order, stops at the first failure, caches by hash, keeps one file name per target.
The full public suite is run separately (see docs/faults.md); these tests pin the contract.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.reposim import RepoSim
from uptend.agent.lock import DataDirLock
from uptend.cli import app
from uptend.cli.tuf_client import ANCHOR_NAME

A = "a/one.txt"
B = "b/two.bin"

runner = CliRunner()


@pytest.fixture
def sim() -> Iterator[RepoSim]:
    with RepoSim() as s:
        s.add_target(A, b"first artifact")
        s.add_target(B, os.urandom(50_000))
        s.publish()
        yield s


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    md, out = tmp_path / "metadata", tmp_path / "targets"
    md.mkdir()
    out.mkdir()
    return md, out


def tuf_client(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["tuf-client", *args])
    return result.exit_code, " ".join(result.output.split())


def init(sim: RepoSim, md: Path, tmp_path: Path) -> None:
    root = tmp_path / "initial_root.json"
    root.write_bytes(sim.root_bytes(1))
    assert tuf_client("--metadata-dir", str(md), "init", str(root))[0] == 0


def refresh(sim: RepoSim, md: Path) -> tuple[int, str]:
    return tuf_client("--metadata-dir", str(md), "--metadata-url", sim.metadata_url, "refresh")


def download(sim: RepoSim, md: Path, out: Path, *names: str) -> tuple[int, str]:
    target_args = [arg for name in names for arg in ("--target-name", name)]
    return tuf_client(
        "--metadata-url",
        sim.metadata_url,
        "--metadata-dir",
        str(md),
        *target_args,
        "--target-dir",
        str(out),
        "--target-base-url",
        sim.targets_url,
        "download",
    )


def files(directory: Path) -> dict[str, bytes]:
    """Every file in `directory`, hidden ones included (a leftover partial would show)."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_init_stores_the_root_without_a_request(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    init(sim, md, tmp_path)
    assert (md / ANCHOR_NAME).read_bytes() == sim.root_bytes(1)
    assert list(md.glob("*.json")) == []  # never mistaken for cached metadata
    assert sim.requests == []


def test_init_refuses_an_invalid_root(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    root = tmp_path / "root.json"
    root.write_bytes(sim.root_bytes(1).replace(b'"version":1', b'"version":2'))
    code, output = tuf_client("--metadata-dir", str(md), "init", str(root))
    assert code == 1
    assert "trusted root is not valid" in output
    assert not (md / ANCHOR_NAME).exists()


def test_refresh_without_init_fails(sim: RepoSim, dirs: tuple[Path, Path]) -> None:
    md, _ = dirs
    code, output = refresh(sim, md)
    assert code == 1
    assert "holds no trusted root" in output
    assert sim.requests == []


def test_refresh_keeps_non_versioned_names(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    init(sim, md, tmp_path)
    assert refresh(sim, md)[0] == 0
    assert sorted(p.name for p in md.glob("*.json")) == [
        "root.json",
        "snapshot.json",
        "targets.json",
        "timestamp.json",
    ]


def test_refresh_persists_a_rotated_root_as_the_anchor(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    init(sim, md, tmp_path)
    sim.rotate_keys("root")
    assert refresh(sim, md)[0] == 0
    assert (md / ANCHOR_NAME).read_bytes() == sim.root_bytes(2)


def test_refresh_refuses_an_expired_timestamp(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    init(sim, md, tmp_path)
    sim.expire_timestamp()
    code, output = refresh(sim, md)
    assert code == 1
    assert "metadata expired" in output


def test_download_writes_verified_artifacts_and_caches_them(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, out = dirs
    init(sim, md, tmp_path)
    assert download(sim, md, out, A, B)[0] == 0
    assert files(out) == {
        "a%2Fone.txt": b"first artifact",
        "b%2Ftwo.bin": sim.artifacts[sim.target_url_path(B)],
    }
    fetched = [r for r in sim.requests if r.path.startswith("/targets/")]
    assert len(fetched) == 2

    # Asked again: nothing is downloaded, the files are already verified copies.
    assert download(sim, md, out, A, B)[0] == 0
    assert len([r for r in sim.requests if r.path.startswith("/targets/")]) == 2

    # A new signed version of A lands under the same file name.
    sim.add_target(A, b"second artifact")
    sim.publish()
    assert download(sim, md, out, A)[0] == 0
    assert files(out)["a%2Fone.txt"] == b"second artifact"
    assert len(files(out)) == 2


def test_download_stops_at_the_first_failure(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, out = dirs
    init(sim, md, tmp_path)
    code, output = download(sim, md, out, "missing.txt", A)
    assert code == 1
    assert "missing.txt is not a signed target" in output
    assert files(out) == {}


def test_download_refuses_a_substituted_artifact(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, out = dirs
    init(sim, md, tmp_path)
    sim.tamper(sim.target_url_path(B), bytes(50_000))
    code, output = download(sim, md, out, A, B)
    assert code == 1
    assert "hash mismatch for b/two.bin" in output
    assert files(out) == {"a%2Fone.txt": b"first artifact"}  # no partial left behind


def test_download_resumes_an_interrupted_artifact(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, out = dirs
    init(sim, md, tmp_path)
    assert refresh(sim, md)[0] == 0
    sim.cut_after_bytes = 20_000
    assert download(sim, md, out, B)[0] == 1
    assert download(sim, md, out, B)[0] == 0
    ranges = [r.range for r in sim.requests if r.path.startswith("/targets/")]
    assert ranges == [None, "bytes=20000-"]
    assert files(out) == {"b%2Ftwo.bin": sim.artifacts[sim.target_url_path(B)]}


def test_a_second_client_on_the_same_directory_exits_1(
    sim: RepoSim, dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    md, _ = dirs
    init(sim, md, tmp_path)
    with DataDirLock(md):
        code, output = refresh(sim, md)
    assert code == 1
    assert "another uptend agent is already running" in output
    assert sim.requests == []


@pytest.mark.parametrize("command", [[], ["init"], ["refresh"], ["download"]])
def test_every_command_help_has_an_example(command: list[str]) -> None:
    code, output = tuf_client(*command, "--help")
    assert code == 0
    assert "Example: uptend tuf-client" in output
