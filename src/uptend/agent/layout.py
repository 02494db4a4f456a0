"""Where the agent keeps things under its data dir (all renames stay on one filesystem).

agent.json                 enrollment: server, agent id, credential (0600)
state/<app>.journal        the update plan of each app (atomic write + fsync)
state/trusted-root         the TUF trust anchor (not *.json: never the ngclient cache)
state/outbox.json          reports not yet delivered
state/directives.json      the last directives, to keep running while offline
tuf/                       ngclient's metadata cache
logs/agent.log             the agent's own log
logs/updates/              one log per update attempt
apps/<app>/versions/<v>/   complete, verified, immutable: exactly the release's files
apps/<app>/current         -> versions/<v>
apps/<app>/staging/        downloads and unpacks in progress
apps/<app>/state/          the app's own writable state, kept across versions
apps/<app>/logs/<v>.out    the app's output, per version
apps/<app>/run.json        pid of the running process (to clean up after kill -9)
"""

from dataclasses import dataclass
from pathlib import Path


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

    def app_log(self, app: str, version: str) -> Path:
        return self.app_dir(app) / "logs" / f"{version}.out"

    def run_file(self, app: str) -> Path:
        return self.app_dir(app) / "run.json"

    def apps(self) -> list[str]:
        if not self.apps_dir.is_dir():
            return []
        return sorted(p.name for p in self.apps_dir.iterdir() if p.is_dir())

    def make(self) -> None:
        for d in (self.state_dir, self.tuf_dir, self.update_logs, self.apps_dir):
            d.mkdir(parents=True, exist_ok=True)

    def make_app(self, app: str) -> None:
        for d in (self.versions(app), self.staging(app), self.app_state(app)):
            d.mkdir(parents=True, exist_ok=True)
        (self.app_dir(app) / "logs").mkdir(exist_ok=True)
