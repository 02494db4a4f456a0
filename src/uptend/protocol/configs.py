"""Signed remote configuration on the admin API: `uptend config set/history/get/rollback`.

A config version is a document (UTF-8 text) signed as the TUF target `<app>/_config/<N>` in
the app's own delegated role (docs/config.md says why there): the agent fetches it through
the signed metadata and refuses what the metadata does not name. Versions only go up: a
rollback is a new version with an older one's content, so an agent never has to accept a
lower version (a replayed old config is refused like a downgrade).
"""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from uptend.protocol import limits, names

MAX_CONFIG_BYTES = limits.MAX_CONFIG_BYTES
CONFIG_DIR = "_config"  # the middle part of a config target's path: never a version
NameText = Annotated[str, StringConstraints(pattern=rf"^{names.PATTERN}$")]


def config_target(app: str, version: int) -> str:
    """The TUF target path of version `version` of `app`'s config."""
    return f"{app}/{CONFIG_DIR}/{version}"


class _Admin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConfigSet(_Admin):
    content: Annotated[str, StringConstraints(max_length=MAX_CONFIG_BYTES, pattern=r"^[^\x00]*$")]
    group: NameText | None = Field(default=None, description="None: every group of the app")


class ConfigRollback(_Admin):
    to: int = Field(ge=1, le=limits.MAX_INT, description="the version whose content comes back")


class ConfigView(_Admin):
    app: str
    version: int
    group: str | None  # None: every group
    target: str  # the signed TUF target
    sha256: str
    length: int
    created_by: str
    created_at: datetime
    rollback_of: int | None = None  # a rollback: the version whose content this repeats


class ConfigDocument(ConfigView):
    content: str
