"""Key rotation, root renewal and the offline mode of `TufRepo`, checked by a real ngclient.

Each rotation test keeps one client cache from before the rotation (an enrolled agent) and
walks it to a release published after it; each attack signs with a key the repository no
longer trusts, or lacks, and shows the client refuses it.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets

from tests.server.tuf_support import CUSTOM, client, serve, stage, version
from uptend.errors import ConfigError, VerificationError
from uptend.server.tuf_repo import Expiry, TufRepo
from uptend.server.tuf_repo.files import load_key
from uptend.server.tuf_repo.lifetimes import due, warning
from uptend.server.tuf_repo.signed import accept, decode, encode, sign_release

KEYS = ["root", "targets", "snapshot", "timestamp", "releases"]


@pytest.fixture
def repo(tmp_path: Path) -> TufRepo:
    return TufRepo.create(tmp_path / "repo")


@pytest.fixture
def url(repo: TufRepo) -> Iterator[str]:
    with serve(repo.root) as base:
        yield base


def keyid(path: Path) -> str:
    return CryptoSigner(load_pem_private_key(path.read_bytes(), None)).public_key.keyid


@pytest.mark.parametrize("name", KEYS)
def test_an_enrolled_client_follows_each_rotation(
    repo: TufRepo, url: str, tmp_path: Path, name: str
) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"one"), CUSTOM)
    cache = tmp_path / "agent"
    assert client(repo, url, cache).get_targetinfo("demo/1.0/a") is not None
    old_id = keyid(repo.root / "keys" / f"{name}.pem")

    done = repo.rotate(name, datetime.now(UTC))

    assert done.old_keyid == old_id != done.new_keyid
    assert keyid(repo.root / "keys" / f"{name}.pem") == done.new_keyid
    assert (repo.root / "keys" / "retired" / f"{name}-{old_id[:16]}.pem").is_file()
    assert not list((repo.root / "keys").glob("*.next.pem"))
    root = Metadata[Root].from_bytes(
        (repo.metadata_dir / f"{done.root_version}.root.json").read_bytes()
    )
    if name == "releases":
        assert done.root_version == 1  # the top-level targets role lists it, not root
    else:
        assert done.root_version == 2
        assert root.signed.roles[name].keyids == [done.new_keyid]
        if name == "root":  # signed by the old root key and the new one
            assert set(root.signatures) == {old_id, done.new_keyid}
    repo.add_target("demo/2.0/b", stage(tmp_path, b"two"), CUSTOM)
    updater = client(repo, url, cache)  # the same cache: the agent enrolled before
    info = updater.get_targetinfo("demo/2.0/b")
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == b"two"
    assert TufRepo.open(repo.root).target_names() == ["demo/1.0/a", "demo/2.0/b"]


@pytest.mark.parametrize("name", ["targets", "releases"])
def test_metadata_signed_only_by_the_rotated_out_key_is_refused(
    repo: TufRepo, url: str, tmp_path: Path, name: str
) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"one"), CUSTOM)
    cache = tmp_path / "agent"
    client(repo, url, cache)
    old_pem = repo.root / "keys" / f"{name}.pem"
    old = load_key(old_pem)
    repo.rotate(name, datetime.now(UTC))
    # The attacker holds the old key: a repository made to sign with it alone. A new app makes
    # the top-level targets role be signed again; an existing one only its own role.
    attacker = TufRepo.open(repo.root)
    attacker._signers[name] = old
    evil = "evil/6.6/x" if name == "targets" else "demo/6.6/x"
    attacker.add_target(evil, stage(tmp_path, b"evil"), CUSTOM)
    with pytest.raises(UnsignedMetadataError):
        client(repo, url, cache).get_targetinfo(evil)


def test_a_rotation_killed_before_it_published_is_discarded(repo: TufRepo) -> None:
    staged = repo.keyring.stage("timestamp")  # what a kill right after step 1 leaves
    before = keyid(repo.root / "keys" / "timestamp.pem")
    TufRepo.open(repo.root)
    assert not staged.exists()
    assert keyid(repo.root / "keys" / "timestamp.pem") == before


def test_a_rotation_killed_after_the_new_root_is_finished_at_open(
    repo: TufRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # stands for a kill between steps 3 and 4

    monkeypatch.setattr(repo.keyring, "promote", killed)
    with pytest.raises(KeyboardInterrupt):
        repo.rotate("snapshot", datetime.now(UTC))
    staged = repo.root / "keys" / "snapshot.next.pem"
    new = keyid(staged)
    reopened = TufRepo.open(repo.root)
    assert keyid(repo.root / "keys" / "snapshot.pem") == new
    assert not staged.exists()
    assert reopened.refresh_expiring(datetime.now(UTC) + timedelta(days=6))  # signs with it


def test_root_is_renewed_before_it_expires(repo: TufRepo, url: str, tmp_path: Path) -> None:
    cache = tmp_path / "agent"
    client(repo, url, cache)
    expires = Metadata[Root].from_bytes(repo.initial_root()).signed.expires
    soon = expires - timedelta(days=100)  # under half of a year left
    assert repo.refresh_expiring(soon)
    renewed = Metadata[Root].from_bytes((repo.metadata_dir / "2.root.json").read_bytes())
    assert renewed.signed.expires == soon + Expiry().of("root")
    assert renewed.signed.roles == Metadata[Root].from_bytes(repo.initial_root()).signed.roles
    client(repo, url, cache)
    assert version(cache / "root.json") == 2


def test_the_renewal_rule_and_the_warning_are_pure() -> None:
    year = timedelta(days=365)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert not due(now + timedelta(days=183), now, year)
    assert due(now + timedelta(days=182), now, year)
    month = timedelta(days=30)
    assert warning("root", now + timedelta(days=31), now, month) is None
    text = warning("root", now + timedelta(days=29), now, month)
    assert text is not None
    assert "expires in 29 days" in text
    assert "uptend keys renew" in text
    assert "expires in 5 hours" in str(warning("root", now + timedelta(hours=5), now, month))
    assert "root metadata expired" in str(warning("root", now - timedelta(days=1), now, month))


def test_offline_mode_refuses_to_sign_and_warns_of_expiry(
    repo: TufRepo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo.add_target("demo/1.0/a", stage(tmp_path, b"one"), CUSTOM)
    workstation = tmp_path / "workstation"
    moved = repo.export_offline(workstation, datetime.now(UTC))
    assert sorted(p.name for p in moved) == ["releases.pem", "root.pem", "targets.pem"]
    assert sorted(p.name for p in (repo.root / "keys").glob("*.pem")) == [
        "snapshot.pem",
        "timestamp.pem",
    ]
    server = TufRepo.open(repo.root)
    assert server.offline
    with pytest.raises(ConfigError, match="release keys are offline"):
        server.add_target("demo/2.0/b", stage(tmp_path, b"two"), CUSTOM)
    assert server.target_names() == ["demo/1.0/a"]
    with pytest.raises(ConfigError, match="root key is not on this server"):
        server.rotate("timestamp", datetime.now(UTC))
    late = datetime.now(UTC) + timedelta(days=340)
    assert server.refresh_expiring(late)  # snapshot and timestamp: still re-signed here
    assert "TUF root metadata expires in" in caplog.text
    assert "TUF app.demo metadata expires in" in caplog.text
    ceremony = TufRepo.open(repo.root, keys=(workstation,))
    assert not ceremony.offline
    assert ceremony.rotate("timestamp", datetime.now(UTC)).root_version == 2
    assert (workstation / "root.pem").is_file()


def test_a_workstation_signed_release_reaches_a_client(
    repo: TufRepo, url: str, tmp_path: Path
) -> None:
    workstation = tmp_path / "workstation"
    repo.export_offline(workstation, datetime.now(UTC))
    server = TufRepo.open(repo.root)
    keys = {n: load_key(workstation / f"{n}.pem") for n in ("targets", "releases")}
    cache = tmp_path / "agent"
    client(server, url, cache)
    for content, name in ((b"one", "demo/1.0/a"), (b"two", "demo/2.0/b")):
        staged = stage(tmp_path, content)
        target = TargetFile.from_data(name, content, ["sha256"])
        target.unrecognized_fields["custom"] = CUSTOM
        roles = sign_release(
            lambda f: (server.metadata_dir / f).read_bytes(),
            keys if name.endswith("a") else {"releases": keys["releases"]},
            target,
            datetime.now(UTC),
            timedelta(days=365),
        )
        assert set(roles) == ({"targets", "app.demo"} if name.endswith("a") else {"app.demo"})
        server.add_target(name, staged, CUSTOM, decode(encode(roles)))
    updater = client(server, url, cache)
    info = updater.get_targetinfo("demo/2.0/b")
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == b"two"


def test_the_server_checks_what_the_workstation_signed(repo: TufRepo, tmp_path: Path) -> None:
    workstation = tmp_path / "workstation"
    repo.add_target("demo/1.0/a", stage(tmp_path, b"one"), CUSTOM)
    repo.export_offline(workstation, datetime.now(UTC))
    server = TufRepo.open(repo.root)
    releases = load_key(workstation / "releases.pem")
    state = server._current()
    current = server._role(state, "app.demo")
    now = datetime.now(UTC)

    assert current is not None

    def new_target(content: bytes) -> TargetFile:
        target = TargetFile.from_data("demo/2.0/b", content, ["sha256"])
        target.unrecognized_fields["custom"] = CUSTOM
        return target

    def signed(key: CryptoSigner, content: bytes, **change: object) -> dict[str, Metadata[Targets]]:
        md = Metadata[Targets].from_bytes(current.to_bytes())
        md.signed.targets["demo/2.0/b"] = new_target(content)
        md.signed.version += 1
        md.signed.expires = now + timedelta(days=30)
        for k, v in change.items():
            setattr(md.signed, k, v)
        md.sign(key)
        return {"app.demo": md}

    def check(roles: dict[str, Metadata[Targets]]) -> None:
        accept(roles, root=server._root, top=state.targets, current=current,
               role="app.demo", target=new_target(b"two"), now=now)  # fmt: skip

    check(signed(releases, b"two"))  # the real thing passes
    with pytest.raises(VerificationError, match="not signed by the key this repository trusts"):
        check(signed(load_key(repo.root / "keys" / "snapshot.pem"), b"two"))  # the server's own
    with pytest.raises(VerificationError, match="the next one is"):
        check(signed(releases, b"two", version=1))  # a replay of an older signing
    with pytest.raises(VerificationError, match="plus the uploaded archive"):
        check(signed(releases, b"not the uploaded bytes"))
    with pytest.raises(VerificationError, match="expires at"):
        check(signed(releases, b"two", expires=now + timedelta(hours=1)))
    with pytest.raises(VerificationError, match="not the role"):
        check({"app.other": signed(releases, b"two")["app.demo"]})
    with pytest.raises(VerificationError, match="malformed"):
        decode(b'{"roles": {"app.demo": {"signed": {}}}}')
