"""Where the agent keeps things under its data dir (all renames stay on one filesystem).

agent.json                 enrollment: server, agent id, credential (0600)
state/<app>.journal        the update plan of each app (atomic write + fsync)
state/trusted-root         the TUF trust anchor (not *.json: never the ngclient cache)
state/outbox.json          reports not yet delivered
state/directives.json      the last directives, to keep running while offline
state/settings.json        the agent's own signed settings: applied, in trial, bad versions
state/settings/<N>         their verified documents (`uptend config set uptend-agent`)
tuf/                       ngclient's metadata cache
logs/agent.log             the agent's own log
logs/updates/              one log per update attempt
apps/<app>/versions/<v>/   complete, verified, immutable: exactly the release's files
apps/<app>/current         -> versions/<v>
apps/<app>/staging/        downloads and unpacks in progress
apps/<app>/state/          the app's own writable state, kept across versions
apps/<app>/logs/<v>.out    the app's output, per version
apps/<app>/run.json        pid of the running process (to clean up after kill -9)
state/server-ca.pem        optional: the CA (or self-signed cert) that the server's TLS
                           certificate is checked against, besides the system's (0600)

Private: the data dir and every directory the agent makes in it are 0700, whatever the
umask and whatever mode a directory had before (`make` tightens them at every start),
so no other user of the host reads a credential, a journal or a log. An app's own
`state/` is created 0700 and then left alone: the app (run as the agent's user, with the
agent's umask) writes there, and may open it up itself. The release's files under
`versions/` keep the modes the archive gave them.
"""

from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR = 0o700
SETTINGS_APP = "uptend-agent"  # the config "app" whose documents are the agent's settings


def private_dir(path: Path) -> None:
    """Make `path` a 0700 directory, tightening it if it already exists."""
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        path.chmod(PRIVATE_DIR)


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "agent.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def trusted_root(self) -> Path:
        return self.state_dir / "trusted-root"

    @property
    def outbox(self) -> Path:
        return self.state_dir / "outbox.json"

    @property
    def directives(self) -> Path:
        return self.state_dir / "directives.json"

    @property
    def server_ca(self) -> Path:
        return self.state_dir / "server-ca.pem"

    def ca_file(self) -> Path | None:
        """The extra CA to trust for the server's TLS certificate, if enrollment kept one."""
        return self.server_ca if self.server_ca.is_file() else None

    @property
    def tuf_dir(self) -> Path:
        return self.root / "tuf"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def update_logs(self) -> Path:
        return self.logs_dir / "updates"

    @property
    def apps_dir(self) -> Path:
        return self.root / "apps"

    def journal(self, app: str) -> Path:
        return self.state_dir / f"{app}.journal"

    def app_dir(self, app: str) -> Path:
        return self.apps_dir / app

    def versions(self, app: str) -> Path:
        return self.app_dir(app) / "versions"

    def version_dir(self, app: str, version: str) -> Path:
        return self.versions(app) / version

    def current(self, app: str) -> Path:
        return self.app_dir(app) / "current"

    def staging(self, app: str) -> Path:
        return self.app_dir(app) / "staging"

    def target_record(self, app: str, version: str) -> Path:
        """What the signed metadata said about `version`, kept beside its download."""
        return self.staging(app) / f"{version}.target.json"

    def app_state(self, app: str) -> Path:
        return self.app_dir(app) / "state"

    def app_config(self, app: str) -> Path:
        return self.app_dir(app) / "config.json"

    def configs(self, app: str) -> Path:
        """Verified config documents (`configs/<N>`) and the one before a trial (`previous`).

        The agent's own settings are kept in `state/settings/`: not under `apps/`, where a
        directory is an app the agent runs.
        """
        if app == SETTINGS_APP:
            return self.state_dir / "settings"
        return self.app_dir(app) / "configs"

    def app_log(self, app: str, version: str) -> Path:
        return self.app_dir(app) / "logs" / f"{version}.out"

    def run_file(self, app: str) -> Path:
        return self.app_dir(app) / "run.json"

    def apps(self) -> list[str]:
        if not self.apps_dir.is_dir():
            return []
        return sorted(p.name for p in self.apps_dir.iterdir() if p.is_dir())

    def make(self) -> None:
        """Create (or tighten) the data dir and the agent's own directories, all 0700."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        dirs = (self.state_dir, self.tuf_dir, self.logs_dir, self.update_logs, self.apps_dir)
        for d in (self.root, *dirs):
            private_dir(d)

    def make_app(self, app: str) -> None:
        """Create what is missing of an app's directories, 0700 (existing ones are left as is)."""
        app_dir = self.app_dir(app)
        for d in (app_dir, self.versions(app), self.staging(app), self.app_state(app)):
            d.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        (app_dir / "logs").mkdir(mode=PRIVATE_DIR, exist_ok=True)
