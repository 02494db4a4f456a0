"""The agent's enrollment record (agent.json, 0600) and enrollment itself.

Every file written here is 0600 (`files.write_atomically`'s default) in 0700 directories.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uptend.agent import files, tls
from uptend.agent.control import ControlClient
from uptend.agent.layout import Layout
from uptend.agent.preconditions import REBOOT_REQUIRED, Preconditions
from uptend.agent.wire import EnrollRequest, EnrollResponse
from uptend.errors import ConfigError, VerificationError
from uptend.protocol.tokens import root_fingerprint_of


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: str
    agent_id: str
    name: str
    credential: str
    metadata_url: str
    targets_url: str
    poll_interval_s: float
    precondition_commands: list[list[str]] = field(default_factory=list)
    check_reboot: bool = True
    check_disk: bool = True
    reboot_flag: str = str(REBOOT_REQUIRED)  # the distro's "reboot pending" flag file
    keep_apps_on_exit: bool = False  # SIGTERM leaves the apps running, for the next agent
    # an installed agent's new version that has not checked in this long after its switch
    # is rolled back (agent/selfupdate.py)
    self_confirm_s: float = 300.0
    log_level: str = "info"  # debug | info | warning | error (also a signed agent setting)
    # new signed agent settings (`uptend config set uptend-agent`) with which no check-in
    # succeeds this long after they came into force are rolled back (agent/settingsplan.py)
    settings_confirm_s: float = 120.0
    dpkg_root: str = ""  # deb kind: dpkg --root (empty: the system's; read by installers/deb.py)
    dpkg_admindir: str = ""  # deb kind: dpkg --admindir (empty: <root>/var/lib/dpkg)
    rpm_root: str = ""  # rpm kind: rpm --root (empty: the system's; read by installers/rpm.py)
    rpm_dbpath: str = ""  # rpm kind: rpm --dbpath inside the root (empty: /var/lib/rpm)
    apt_sources_dir: str = ""  # apt kind: holds <repository>.list (empty: sources.list.d)
    apt_state_dir: str = ""  # apt kind: private lists and cache (empty: the system's)

    def preconditions(self) -> Preconditions:
        return Preconditions(
            reboot=self.check_reboot,
            disk=self.check_disk,
            commands=tuple(tuple(c) for c in self.precondition_commands),
            reboot_flag=Path(self.reboot_flag),
        )


def load(layout: Layout) -> AgentConfig:
    try:
        raw = json.loads(layout.config.read_text())
        return AgentConfig(**raw)
    except FileNotFoundError:
        raise ConfigError(
            f"{layout.root} is not an enrolled agent data dir",
            hint=f"enroll it with `uptend agent enroll {layout.root} --server URL --token TOKEN`",
        ) from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{layout.config} is damaged: {e}", hint="re-enroll the agent") from None


def store_credential(layout: Layout, credential: str) -> None:
    """Replace the credential in agent.json (atomic, 0600), keeping every other setting."""
    raw = json.loads(layout.config.read_text())
    raw["credential"] = credential
    files.write_atomically(layout.config, json.dumps(raw, indent=2).encode(), mode=0o600)


def enroll(
    layout: Layout,
    server: str,
    token: str,
    name: str,
    group: str,
    ca_file: Path | None = None,
    labels: Sequence[str] = (),
) -> AgentConfig:
    """Enroll with the server, checking the TUF root against the token's fingerprint.

    `ca_file` (PEM), if given, is trusted for the server's TLS certificate from now on,
    besides the system's CAs: it is copied into the data dir (`Layout.server_ca`, 0600).
    """
    if layout.config.exists():
        raise ConfigError(
            f"{layout.root} is already enrolled",
            hint="use a new data dir, or remove agent.json to enroll again",
        )
    expected = root_fingerprint_of(token)
    ca = _read_ca(ca_file)
    answer = ControlClient(server, ca_file=ca_file).post(
        "api/v1/enroll",
        EnrollRequest(token=token, name=name, group=group, labels=list(labels)),
        EnrollResponse,
    )
    root = answer.root.encode()
    # No trust on first use: the root must be the one the token vouches for.
    if hashlib.sha256(root).hexdigest() != expected:
        raise VerificationError(
            "the server sent a TUF root that does not match the enrollment token",
            hint="check --server: this may not be the server that issued the token",
        )
    layout.make()
    files.write_atomically(layout.trusted_root, root)
    if ca is not None:
        files.write_atomically(layout.server_ca, ca)
    config = AgentConfig(
        server=server.rstrip("/") + "/",
        agent_id=answer.agent_id,
        name=name,
        credential=answer.credential,
        metadata_url=answer.metadata_url,
        targets_url=answer.targets_url,
        poll_interval_s=answer.poll_interval_s,
    )
    files.write_atomically(layout.config, json.dumps(asdict(config), indent=2).encode())
    return config


def _read_ca(ca_file: Path | None) -> bytes | None:
    if ca_file is None:
        return None
    tls.client_context(ca_file)  # refuse a file that does not load, before enrolling
    try:
        return ca_file.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the CA file {ca_file}: {e.strerror}") from None
