"""The TUF target naming scheme and its signed `custom` metadata.

Targets are named `<app>/<version>/<file>`. python-tuf signs `custom` but does not validate
it, so the agent parses it strictly here before trusting any field (docs/faults.md A14).
"""

from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core.core_schema import SerializerFunctionWrapHandler

from uptend.errors import ConfigError, VerificationError
from uptend.protocol.names import check_name
from uptend.protocol.versions import parse_version


class InstallKind(StrEnum):
    BUNDLE = "bundle"
    DEB = "deb"  # a Debian package, installed with dpkg (agent/installers/deb.py)
    RPM = "rpm"  # an rpm package, installed with rpm -U (agent/installers/rpm.py)
    APT = "apt"  # a .deb from the host's apt repository, installed with dpkg (installers/apt.py)
    COMMAND = "command"  # the vendor's installer, run by its command (installers/command.py)
    AGENT = "agent"  # the agent itself: a wheelhouse (agent/installers/agent.py)


AGENT_APP = "uptend-agent"  # the app whose releases are the agent's own (kind `agent`)


class ArchiveFormat(StrEnum):
    TAR_GZ = "tar.gz"
    ZIP = "zip"
    DEB = "deb"  # the target is the .deb itself, never unpacked by uptend
    RPM = "rpm"  # the target is the .rpm itself, never unpacked by uptend
    APT = "apt"  # the target is the uptend.toml: the server decides, apt has the bytes
    FILE = "file"  # the target is an installer file, run by the manifest's [installer] command


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
    floor: str | None = Field(
        default=None,
        description="the app's floor, on the release published with --floor and on every lower"
        " one (re-signed then): a version below it must not be installed any more",
    )
    # A package's uptend.toml (it travels signed here, not inside the package); None for bundles
    manifest: str | None = Field(default=None, max_length=16384)

    @model_validator(mode="after")
    def _kind_matches_format(self) -> "TargetCustom":
        own = {
            InstallKind.DEB: ArchiveFormat.DEB,
            InstallKind.RPM: ArchiveFormat.RPM,
            InstallKind.APT: ArchiveFormat.APT,
            InstallKind.COMMAND: ArchiveFormat.FILE,
        }
        signed_manifest = self.kind in own
        if own.get(self.kind) not in (None, self.format) or signed_manifest != (
            self.format in own.values()
        ):
            raise ValueError(
                "a deb, rpm, apt, command release is format deb, rpm, apt, file: no other"
            )
        if signed_manifest != (self.manifest is not None):
            raise ValueError("a package or command release has its manifest signed, a bundle not")
        return self

    @model_serializer(mode="wrap")
    def _bundles_unchanged(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A bundle's signed custom stays exactly what agents before the deb kind accept."""
        data: dict[str, Any] = handler(self)
        if data.get("manifest") is None:
            data.pop("manifest", None)
        return data

    @field_validator("app", "channel")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name("app or channel", value)
        except ConfigError as e:
            raise ValueError(e.message) from None

    @field_validator("version", "floor")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parse_version(value)
        except ConfigError as e:
            raise ValueError(e.message) from None
        return value

    def signed_form(self) -> dict[str, Any]:
        """What is signed: without a null `floor`, so a release with none reads as before."""
        return self.model_dump(mode="json", exclude_none=True)


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
