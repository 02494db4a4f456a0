"""The agent's TUF session under attack: real HTTP on 127.0.0.1, a real ngclient, no mocks.

One test per attack (docs/faults.md groups A and C), each named after it, and each checks
what is on disk afterwards: the metadata cache still holding only what verified.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from tests.agent.tuf_repo import cached_roles, session, target_requests
from tests.reposim import RepoSim
from uptend.agent.http import FetchLimits
from uptend.agent.lock import DataDirLock
from uptend.agent.tuf_session import TufSession, check_trusted_root
from uptend.errors import ConflictError, TransientError, VerificationError

# -- network faults on metadata (docs/faults.md C20, C22) ---------------------------------


def test_unreachable_repository_is_transient(md_dir: Path, sim: RepoSim) -> None:
    anchor = sim.root_bytes(1)
    sim.close()  # nothing listens on that port any more
    with (
        TufSession(md_dir, sim.metadata_url, anchor) as s,
        pytest.raises(TransientError, match=r"refreshing TUF metadata failed.*could not connect"),
    ):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1}


def test_slow_drip_of_metadata_hits_deadline(sim: RepoSim, md_dir: Path) -> None:
    sim.drip_interval_s = 0.01
    limits = FetchLimits(read_timeout_s=5.0, deadline_s=0.5)
    started = time.monotonic()
    with (
        TufSession(md_dir, sim.metadata_url, sim.root_bytes(1), limits=limits) as s,
        pytest.raises(TransientError, match="deadline passed fetching"),
    ):
        s.refresh()
    assert time.monotonic() - started < 2.5
    assert cached_roles(md_dir) == {"root": 1}


def test_absent_target_is_refused(sim: RepoSim, md_dir: Path) -> None:
    with session(sim, md_dir) as s:
        s.refresh()
        with pytest.raises(VerificationError, match=r"demo/9\.9/x\.tar\.gz is not a signed target"):
            s.target("demo/9.9/x.tar.gz")
    assert target_requests(sim) == []


# -- metadata attacks (docs/faults.md A1, A5-A9, A11, A13) -----------------------------------


def test_targets_signed_by_unknown_key_are_refused(sim: RepoSim, md_dir: Path) -> None:
    sim.signers[Targets.type] = [CryptoSigner.generate_ed25519()]
    sim.add_target("demo/2.0/demo-2.0.tar.gz", b"evil")
    sim.publish()
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="Unsigned"):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 3, "snapshot": 3}


def test_expired_timestamp_is_refused_as_metadata_expired(sim: RepoSim, md_dir: Path) -> None:
    with session(sim, md_dir) as s:
        s.refresh()
    sim.add_target("demo/2.0/demo-2.0.tar.gz", b"new")
    sim.publish([Targets.type, Snapshot.type])
    sim.expire_timestamp()
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="metadata expired"):
        s.refresh()
    # The expired timestamp is not cached and the new snapshot and targets were never
    # fetched: the cache still holds the last metadata that verified.
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}
    assert not any(r.path == "/metadata/3.snapshot.json" for r in sim.requests)


def test_timestamp_rollback_is_refused(sim: RepoSim, md_dir: Path) -> None:
    with session(sim, md_dir) as s:
        s.refresh()
    sim.tamper("/metadata/timestamp.json", sim.published[Timestamp.type][0])
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="BadVersionNumber"):
        s.refresh()
    assert cached_roles(md_dir)["timestamp"] == 2


def test_mix_and_match_snapshot_is_refused(sim: RepoSim, md_dir: Path) -> None:
    """Timestamp names snapshot v2; an old snapshot v1 is served under that name."""
    sim.tamper("/metadata/2.snapshot.json", sim.published[Snapshot.type][0])
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="version"):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 2}


def test_oversized_timestamp_is_refused(sim: RepoSim, md_dir: Path) -> None:
    bloated = json.loads(sim.published[Timestamp.type][-1])
    bloated["signed"]["padding"] = "x" * 17_000
    sim.tamper("/metadata/timestamp.json", json.dumps(bloated).encode())
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="longer than allowed"):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1}


def test_endless_timestamp_is_refused(sim: RepoSim, md_dir: Path) -> None:
    sim.serve_endless("/metadata/timestamp.json")
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="longer than allowed"):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1}


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"signed": {}, "signatures": []}',
        b'{"signed": {"_type": "root"}, "signatures": []}',
        b'{"signed": ',
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        b"",
    ],
    ids=["empty-object", "empty-signed", "wrong-type", "invalid-json", "html-page", "empty"],
)
def test_malformed_timestamp_is_a_clean_verification_error(
    sim: RepoSim, md_dir: Path, body: bytes
) -> None:
    sim.tamper("/metadata/timestamp.json", body)
    with session(sim, md_dir) as s, pytest.raises(VerificationError, match="refreshing"):
        s.refresh()
    assert cached_roles(md_dir) == {"root": 1}


def test_attacker_written_root_json_is_ignored(sim: RepoSim, md_dir: Path) -> None:
    evil_signer = CryptoSigner.generate_ed25519()
    evil = Metadata(Root(expires=sim.expiry))
    for role in (Root.type, Timestamp.type, Snapshot.type, Targets.type):
        evil.signed.add_key(evil_signer.public_key, role)
    evil.sign(evil_signer)
    evil_bytes = evil.to_bytes(JSONSerializer())
    (md_dir / "root.json").write_bytes(evil_bytes)
    (md_dir / "root_history").mkdir()
    (md_dir / "root_history" / "2.root.json").write_bytes(evil_bytes)

    with session(sim, md_dir) as s:
        s.refresh()  # would fail if the evil root (other keys) were trusted
        assert s.trusted_root() == sim.root_bytes(1)
    assert (md_dir / "root.json").read_bytes() == sim.root_bytes(1)
    assert cached_roles(md_dir) == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}


def test_root_rotation_advances_the_anchor(sim: RepoSim, md_dir: Path) -> None:
    sim.rotate_keys(Root.type)
    with session(sim, md_dir) as s:
        s.refresh()
        anchor = s.trusted_root()
    assert anchor == sim.root_bytes(2)
    assert check_trusted_root(anchor) == 2

    # The new anchor alone is enough: even with the cache wiped, v2 is never fetched again.
    wiped = md_dir.parent / "wiped"
    wiped.mkdir()
    sim.requests.clear()
    with TufSession(wiped, sim.metadata_url, anchor) as s:
        s.refresh()
    assert sim.requests[0].path == "/metadata/3.root.json"


def test_root_history_swapped_after_verification_never_becomes_the_anchor(
    sim: RepoSim, md_dir: Path
) -> None:
    sim.rotate_keys(Root.type)
    evil_signer = CryptoSigner.generate_ed25519()
    evil = Metadata(Root(version=2, expires=sim.expiry))
    evil.signed.add_key(evil_signer.public_key, Root.type)
    evil.sign(evil_signer)
    with session(sim, md_dir) as s:
        s.refresh()
        (md_dir / "root_history" / "2.root.json").write_bytes(evil.to_bytes(JSONSerializer()))
        assert s.trusted_root() == sim.root_bytes(1)  # the old anchor stays


def test_timestamp_key_rotation_with_fast_forward_recovery(sim: RepoSim, md_dir: Path) -> None:
    """A compromised timestamp key pushed version 1000; after rotation v1 is accepted again."""
    sim.timestamp.version = 1000
    sim.publish([Timestamp.type], bump=False)
    with session(sim, md_dir) as s:
        s.refresh()
    assert cached_roles(md_dir)["timestamp"] == 1000

    sim.rotate_keys(Timestamp.type)
    sim.timestamp.version = 1
    sim.publish([Timestamp.type], bump=False)
    with session(sim, md_dir) as s:  # still anchored at root v1: the chain reaches v2
        s.refresh()
        assert s.trusted_root() == sim.root_bytes(2)
    assert cached_roles(md_dir) == {"root": 2, "timestamp": 1, "snapshot": 2, "targets": 2}


def test_invalid_trusted_root_is_refused_before_any_request(sim: RepoSim, md_dir: Path) -> None:
    doc = json.loads(sim.root_bytes(1))
    doc["signed"]["version"] = 7  # the signature no longer matches
    with pytest.raises(VerificationError, match="trusted root is not valid"):
        check_trusted_root(json.dumps(doc).encode())
    with (
        TufSession(md_dir, sim.metadata_url, json.dumps(doc).encode()) as s,
        pytest.raises(VerificationError),
    ):
        s.refresh()
    assert sim.requests == []


# -- one agent per data directory (docs/faults.md F43) --------------------------------------


_SECOND_AGENT = """
import sys
from pathlib import Path
from uptend.agent.lock import DataDirLock
from uptend.errors import ConflictError
try:
    with DataDirLock(Path(sys.argv[1])):
        pass
except ConflictError as e:
    print(e.message)
    sys.exit(e.exit_code)
"""


def test_second_lock_holder_is_refused(sim: RepoSim, md_dir: Path) -> None:
    with session(sim, md_dir) as s:
        s.refresh()
    before = cached_roles(md_dir)
    with DataDirLock(md_dir):
        second = subprocess.run(
            [sys.executable, "-c", _SECOND_AGENT, str(md_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode == ConflictError.exit_code
        assert f"another uptend agent is already running on {md_dir}" in second.stdout
        assert f"(pid {os.getpid()})" in second.stdout
        with pytest.raises(ConflictError), DataDirLock(md_dir):  # a second handle, same process
            pass
    assert cached_roles(md_dir) == before
    again = subprocess.run(
        [sys.executable, "-c", _SECOND_AGENT, str(md_dir)], capture_output=True, check=False
    )
    assert again.returncode == 0
