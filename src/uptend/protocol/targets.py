"""The TUF target naming scheme and its signed `custom` metadata.

Targets are named `<app>/<version>/<file>`. python-tuf signs `custom` but does not validate
it, so the agent parses it strictly here before trusting any field (docs/faults.md A14).
"""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from uptend.errors import ConfigError, VerificationError
from uptend.protocol.names import check_name
from uptend.protocol.versions import parse_version


class InstallKind(StrEnum):
    BUNDLE = "bundle"
    AGENT = "agent"  # the agent itself: a wheelhouse (agent/installers/agent.py)


AGENT_APP = "uptend-agent"  # the app whose releases are the agent's own (kind `agent`)


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    ZIP = "zip"


class TargetCustom(BaseModel):
    """What the release key vouches for besides hashes and length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: str
    version: str
    channel: str
    kind: InstallKind = InstallKind.BUNDLE
    format: ArchiveFormat
    unpacked_size: int = Field(ge=0, description="bytes of all regular files once unpacked")
    files: int = Field(ge=0, description="number of archive entries")

    @field_validator("app", "channel")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name("app or channel", value)
        except ConfigError as e:
            raise ValueError(e.message) from None

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        try:
            parse_version(value)
        except ConfigError as e:
            raise ValueError(e.message) from None
        return value


def target_path(app: str, version: str, fmt: ArchiveFormat) -> str:
    return f"{app}/{version}/{app}-{version}.{fmt.value}"


def parse_custom(path: str, custom: Any) -> TargetCustom:
    """Validate the signed `custom` of target `path`; raise VerificationError if it is unusable."""
    try:
        parsed = TargetCustom.model_validate(custom)
    except (ValidationError, ValueError) as e:
        raise VerificationError(
            f"signed target {path!r} has invalid custom metadata: {e}",
            hint="republish the release with a current `uptend release publish`",
        ) from None
    if path != target_path(parsed.app, parsed.version, parsed.format):
        raise VerificationError(
            f"signed target {path!r} does not match its custom metadata "
            f"({parsed.app} {parsed.version})",
            hint="target names must be <app>/<version>/<app>-<version>.<format>",
        )
    return parsed
