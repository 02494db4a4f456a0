"""The journal survives only whole: damaged bytes fall back to what the disk shows."""

from pathlib import Path

import pytest

from uptend.agent import files
from uptend.agent.journal import Journal, decode, encode
from uptend.agent.machine import Phase, Plan


def test_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "demo.journal", tmp_path)
    plan = Plan(Phase.PROBATION, current="1.0", target="2.0", attempts=2, bad=("1.5",))
    journal.save(plan)
    assert journal.load() == plan
    assert [p.name for p in tmp_path.iterdir()] == ["demo.journal"]  # temp file renamed away


@pytest.mark.parametrize(
    "damage",
    [b"", b"{", b"null", b'{"schema": 99}', b"\x00" * 100],
)
def test_damaged_journal_falls_back_to_current(tmp_path: Path, damage: bytes) -> None:
    (tmp_path / "versions" / "1.0").mkdir(parents=True)
    files.point_current_at(tmp_path, "1.0")
    (tmp_path / "demo.journal").write_bytes(damage)
    plan = Journal(tmp_path / "demo.journal", tmp_path).load()
    assert plan.phase is Phase.IDLE
    assert plan.current == "1.0"


def test_checksum_catches_an_edited_journal(tmp_path: Path) -> None:
    data = encode(Plan(current="1.0")).replace(b'"1.0"', b'"9.9"', 1)
    with pytest.raises(ValueError, match="checksum"):
        decode(data)
    assert Journal(tmp_path / "j", tmp_path).load() == Plan(current=None)


def test_missing_journal_reads_current(tmp_path: Path) -> None:
    assert Journal(tmp_path / "j", tmp_path).load() == Plan()


def test_current_switch_is_one_rename(tmp_path: Path) -> None:
    for v in ("1.0", "2.0"):
        (tmp_path / "versions" / v).mkdir(parents=True)
    files.point_current_at(tmp_path, "1.0")
    assert files.read_current(tmp_path) == "1.0"
    files.point_current_at(tmp_path, "2.0")
    assert files.read_current(tmp_path) == "2.0"
    assert (tmp_path / "current").readlink() == Path("versions/2.0")
    files.point_current_at(tmp_path, None)
    assert files.read_current(tmp_path) is None
    # a link pointing anywhere but a versions/ dir is not a current version
    (tmp_path / "current").symlink_to("/etc")
    assert files.read_current(tmp_path) is None
