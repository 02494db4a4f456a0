"""Wire types: versions, names, manifest and target custom metadata parse strictly."""

import pytest

from uptend.errors import ConfigError, VerificationError
from uptend.protocol.manifest import parse_manifest
from uptend.protocol.names import check_name
from uptend.protocol.targets import ArchiveFormat, parse_custom, target_path
from uptend.protocol.tokens import root_fingerprint_of
from uptend.protocol.versions import is_version, newest, parse_version


@pytest.mark.parametrize("good", ["1", "1.0", "2.1.3", "2.0rc1", "1.0.post1", "1.0.dev3"])
def test_pep440_versions_are_accepted(good: str) -> None:
    assert is_version(good)


@pytest.mark.parametrize("bad", ["", "v1", "1.0+local", "1!2.0", "../1", "1.0/x", "latest"])
def test_other_version_strings_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid version"):
        parse_version(bad)


def test_newest_orders_like_pip() -> None:
    assert newest(["1.9", "1.10", "1.10rc1"]) == "1.10"
    assert newest([]) is None


@pytest.mark.parametrize("bad", ["", "Demo", "a/b", "-x", "a" * 64, "a b"])
def test_names_must_be_path_safe(bad: str) -> None:
    with pytest.raises(ConfigError):
        check_name("app", bad)


def test_manifest_defaults_and_errors() -> None:
    m = parse_manifest(b'[app]\ncommand = ["python3", "app.py"]\n')
    assert m.app.command == ["python3", "app.py"]
    assert m.health.probation == 10
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_manifest(b"[app\n")
    with pytest.raises(ConfigError, match="app"):
        parse_manifest(b"[health]\nprobation = 1\n")
    with pytest.raises(ConfigError, match="command"):
        parse_manifest(b"[app]\ncommand = []\n")
    with pytest.raises(ConfigError, match="http"):
        parse_manifest(b'[app]\ncommand = ["x"]\n[health]\nhttp = "ftp://x"\n')


def custom(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "app": "demo",
        "version": "1.0",
        "channel": "stable",
        "kind": "bundle",
        "format": "tar.gz",
        "unpacked_size": 10,
        "files": 2,
    }
    return {**base, **changes}


def test_custom_metadata_is_parsed_strictly() -> None:
    path = target_path("demo", "1.0", ArchiveFormat.TAR_GZ)
    assert path == "demo/1.0/demo-1.0.tar.gz"
    assert parse_custom(path, custom()).version == "1.0"
    for bad in (
        custom(version="x"),
        custom(kind="msi"),
        custom(unpacked_size=-1),
        custom(extra=1),
        {k: v for k, v in custom().items() if k != "version"},
        "not a dict",
    ):
        with pytest.raises(VerificationError, match="invalid custom metadata"):
            parse_custom(path, bad)
    with pytest.raises(VerificationError, match="does not match"):
        parse_custom("demo/2.0/demo-2.0.tar.gz", custom())


def test_enroll_token_carries_the_root_fingerprint() -> None:
    assert root_fingerprint_of("ute_abc." + "f" * 64) == "f" * 64
    with pytest.raises(ConfigError, match="not an uptend enrollment token"):
        root_fingerprint_of("uta_abc")
