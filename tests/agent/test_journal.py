"""The journal survives only whole: damaged bytes fall back to what the disk shows."""

import hashlib
import json
from pathlib import Path

import pytest

from uptend.agent import files
from uptend.agent.journal import SCHEMA, Journal, decode, encode
from uptend.agent.machine import Hold, HoldState, Pending, Phase, Plan


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


def schema_1(phase: str, **plan: object) -> bytes:
    """A journal as an agent of schema 1 wrote it (bundle phase names, no holds or reports)."""
    body = {"phase": phase, "current": "1.0", "target": "2.0", "attempts": 2, "failure": ""}
    body |= {"bad": ["1.5"], **plan}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return json.dumps({"schema": 1, "plan": body, "sha256": digest}).encode()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("downloading", Phase.FETCHING),
        ("unpacking", Phase.STAGING),
        ("switching", Phase.ACTIVATING),
        ("probation", Phase.PROBATION),
        ("rolling_back", Phase.ROLLING_BACK),
        ("idle", Phase.IDLE),
    ],
)
def test_a_schema_1_journal_reads_as_the_same_step(old: str, new: Phase) -> None:
    assert decode(schema_1(old)) == Plan(new, "1.0", "2.0", attempts=2, bad=("1.5",))


def test_everything_decide_records_round_trips(tmp_path: Path) -> None:
    plan = Plan(
        current="1.0",
        hold=Hold("2.0", HoldState.DEFERRED, "deferred: reboot", until=5.5, failures=1),
        pending=(Pending("deferred", "2.0", "reboot", "", 12.25),),
        said="deferred 2.0 reboot",
        deadline=3.0,
        tries=2,
        retry_at=4.0,
    )
    journal = Journal(tmp_path / "demo.journal", tmp_path)
    journal.save(plan)
    assert journal.load() == plan
    assert json.loads((tmp_path / "demo.journal").read_bytes())["schema"] == SCHEMA == 2
