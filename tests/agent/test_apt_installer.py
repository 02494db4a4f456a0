"""The apt kind's publish side and its reading of apt-cache policy (issue 13).

The end-to-end path with a real signed repository is tests/e2e/test_apt_repo.py.
"""

import re
from pathlib import Path

import pytest

from tests.support.debs import build_deb
from uptend.agent.installers.apt import _candidate, _offered
from uptend.errors import ConfigError
from uptend.protocol.manifest import parse_manifest
from uptend.protocol.targets import ArchiveFormat, InstallKind
from uptend.server.services.releases import describe

MANIFEST = (
    '[app]\ncommand = ["/opt/demo/run"]\n\n[deb]\npackage = "uptend-demo"\nversion = "2.0-1"\n\n'
    '[apt]\nrepository = "uptend"\n'
)

# what apt-cache policy printed in tests/e2e/test_apt_repo.py (one version installed)
POLICY = """uptend-demo:
  Installed: 2.0-1
  Candidate: 3.0-1
  Version table:
     3.0-1 500
        500 http://127.0.0.1:41743 ./ Packages
 *** 2.0-1 500
        500 http://127.0.0.1:41743 ./ Packages
        100 /tmp/dpkg-root/var/lib/dpkg/status
     1:1.0-1 500
        500 http://127.0.0.1:41743 ./ Packages
"""


def test_policy_gives_the_candidate_and_every_offered_version() -> None:
    assert _candidate(POLICY) == "3.0-1"
    assert _offered(POLICY) == ["3.0-1", "2.0-1", "1:1.0-1"]
    assert _offered("N: Unable to locate package uptend-demo\n") == []


def test_an_apt_release_is_its_manifest_and_names_deb_and_apt(tmp_path: Path) -> None:
    toml = tmp_path / "uptend.toml"
    toml.write_text(MANIFEST)
    custom = describe(toml, "demo", "2.0", "stable", ArchiveFormat.APT, MANIFEST)
    assert (custom.kind, custom.format, custom.manifest) == (
        InstallKind.APT,
        ArchiveFormat.APT,
        MANIFEST,
    )
    # the signed target and the signed manifest are one text: never two different ones
    with pytest.raises(ConfigError, match=re.escape("an apt release is its uptend.toml")):
        describe(toml, "demo", "2.0", "stable", ArchiveFormat.APT, MANIFEST + "# other\n")
    no_deb = MANIFEST.split("[deb]")[0] + '[apt]\nrepository = "uptend"\n'
    toml.write_text(no_deb)
    with pytest.raises(ConfigError, match=re.escape("needs [deb] and [apt] sections")):
        describe(toml, "demo", "2.0", "stable", ArchiveFormat.APT, no_deb)


def test_a_deb_release_may_not_carry_an_apt_section(tmp_path: Path) -> None:
    deb = build_deb(tmp_path, "uptend-demo", "2.0-1", "2.0")
    with pytest.raises(ConfigError, match=re.escape("an [apt] section belongs in an apt release")):
        describe(deb, "demo", "2.0", "stable", ArchiveFormat.DEB, MANIFEST)


def test_a_repository_name_cannot_leave_the_sources_dir() -> None:
    for name in ("../../etc/apt/sources", "a/b", ".hidden"):
        text = MANIFEST.replace('repository = "uptend"', f'repository = "{name}"')
        with pytest.raises(ConfigError, match=re.escape("apt.repository: Input should be")):
            parse_manifest(text.encode())
