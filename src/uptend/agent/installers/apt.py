"""The `apt` kind: Patchman's repository mode, a .deb from the host's own apt repository.

The server still decides which version (its signed target is the release's `uptend.toml`:
`[deb]` names the package and version, `[apt]` the repository); apt's repository signature
is the trust root for the bytes. In `stage` (the worker child) the agent refreshes only
that repository (`apt-get update` with `Dir::Etc::sourcelist` at its one list file,
`Dir::Etc::sourceparts=-`, `APT::Get::List-Cleanup=0`), reads the candidate with
`apt-cache policy`, downloads only (`apt-get -d install PKG=VERSION`, into a directory of
its own), checks the package's name and version and keeps it in versions/<v>/; from there
it is the deb kind: `dpkg -i`, probation, rollback to the previous file.

agent.json: `apt_sources_dir` holds `<repository>.list` (empty: /etc/apt/sources.list.d);
`apt_state_dir` gives apt private lists and cache (tests; empty: the system's). Never
`--allow-unauthenticated`: a repository whose signature does not verify is refused.
"""

import json
import os
import re
import subprocess
from pathlib import Path

from uptend.agent.installers.base import Signed
from uptend.agent.installers.deb import DebInstaller
from uptend.agent.layout import Layout
from uptend.agent.worker import Context
from uptend.errors import ConfigError, TransientError, VerificationError
from uptend.protocol.manifest import Manifest

SOURCES_DIR = "/etc/apt/sources.list.d"
APT_TIMEOUT_S = 600.0
_STALE = re.compile(r"GPG error|signature|Failed to fetch|index files failed")


class AptInstaller(DebInstaller):
    kind = "apt"

    def __init__(self, layout: Layout, app: str) -> None:
        super().__init__(layout, app)
        try:
            raw = json.loads(layout.config.read_text())
        except (OSError, ValueError):
            raw = {}
        self.sources = Path(str(raw.get("apt_sources_dir") or SOURCES_DIR))
        self.state = str(raw.get("apt_state_dir") or "")

    def _options(self, repository: str, archives: Path) -> list[str]:
        listed = self.sources / f"{repository}.list"
        if not listed.is_file():
            raise ConfigError(
                f"this host has no apt repository {repository!r} ({listed} does not exist)",
                hint=f"add {listed} with the repository's deb line and its signed-by key",
            )
        pairs = {
            "Dir::Etc::sourcelist": str(listed),
            "Dir::Etc::sourceparts": "-",
            "APT::Get::List-Cleanup": "0",
            "APT::Get::AllowUnauthenticated": "false",
            "Dir::Cache::archives": str(archives),
        }
        if self.state:
            pairs |= {"Dir::State": f"{self.state}/state", "Dir::Cache": f"{self.state}/cache"}
        if self.dpkg.root or self.dpkg.admindir:  # what dpkg has, as apt should see it
            pairs["Dir::State::status"] = str(self.dpkg.database / "status")
        return [arg for k, v in pairs.items() for arg in ("-o", f"{k}={v}")]

    def _package_file(
        self, signed: Signed, manifest: Manifest, artifact: Path, job: Context
    ) -> Path:
        if manifest.apt is None or manifest.deb is None:
            raise ConfigError(f"the signed manifest of {signed.name} has no [apt] and [deb]")
        repository, package, version = manifest.apt.repository, *_names(manifest)
        archives = self.layout.staging(self.app) / f"{signed.custom.version}.apt"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        if self.state:
            for d in ("state/lists/partial", "cache"):
                Path(self.state, d).mkdir(parents=True, exist_ok=True)
        options = self._options(repository, archives)
        self._apt(["apt-get", *options, "update"], f"apt-get update of {repository}")
        job.check()
        policy = self._apt(["apt-cache", *options, "policy", package], "apt-cache policy")
        offered = _offered(policy)
        if version not in offered:
            candidate = _candidate(policy) or "none"
            raise VerificationError(
                f"repository {repository} does not offer {package} {version} "
                f"(candidate: {candidate}; offered: {', '.join(offered) or 'nothing'})"
            )
        job.check()
        download = [
            "apt-get", *options, "-d", "-y", "-q", "--reinstall", "--allow-downgrades",
            "--no-install-recommends", "install", f"{package}={version}",
        ]  # fmt: skip
        self._apt(download, f"apt-get -d install {package}={version}")
        found = sorted(archives.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
        if len(found) != 1:
            raise VerificationError(f"apt downloaded no single {package} {version} into {archives}")
        return found[0]

    @staticmethod
    def _apt(argv: list[str], what: str) -> str:
        """What apt printed; VerificationError with its words on failure (locked: transient)."""
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=APT_TIMEOUT_S,
                check=False,
                env={**os.environ, "LC_ALL": "C"},  # apt's words in English, its proxy kept
            )
        except FileNotFoundError:
            raise ConfigError(f"{argv[0]} is not installed", hint="install apt") from None
        except subprocess.TimeoutExpired:
            raise TransientError(f"{what} took over {APT_TIMEOUT_S:g} s") from None
        out = done.stdout.decode("utf-8", "replace")
        err = done.stderr.decode("utf-8", "replace")
        # with earlier lists, apt only warns of a bad signature (or a failed fetch) and keeps
        # the old index, exit code 0: that is no refresh, and it is refused
        stale = [ln for ln in err.splitlines() if ln.startswith("W:") and _STALE.search(ln)]
        if done.returncode != 0 or stale:
            said = [ln for ln in err.splitlines() if ln.startswith("E:")] + stale
            said = said or err.splitlines()[-3:]
            why = f"{what} failed: {' '.join(said) or f'exit code {done.returncode}'}"
            if "Could not get lock" in err:
                raise TransientError(why)  # another apt runs: try again later
            raise VerificationError(why)
        return out


def _names(manifest: Manifest) -> tuple[str, str]:
    assert manifest.deb is not None
    return manifest.deb.package, manifest.deb.version


def _candidate(policy: str) -> str:
    for line in policy.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    return ""


def _offered(policy: str) -> list[str]:
    """The versions of apt-cache policy's version table ('*** 2.0-1 500' or '2.0-1 500')."""
    table, versions = False, []
    for line in policy.splitlines():
        if line.strip() == "Version table:":
            table = True
        elif table and line.startswith(("     ", " *** ")):  # a version; its sources deeper
            words = line.replace("***", "").split()
            if len(words) == 2 and words[1].lstrip("-").isdigit():
                versions.append(words[0])
    return versions
