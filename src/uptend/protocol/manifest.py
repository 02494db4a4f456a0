"""The `uptend.toml` manifest at the root of every release.

```toml
[app]
command = ["python3", "app.py"]   # run with the version directory as working directory

[health]
probation = 10                     # seconds the new version must stay up
http = "http://127.0.0.1:8080/health"   # optional: 2xx = healthy
command = ["./check.sh"]           # optional: exit 0 = healthy
timeout = 5                        # optional: seconds one probe may take
```
"""

import tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from uptend.errors import ConfigError

MANIFEST_NAME = "uptend.toml"


class AppSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    command: list[str] = Field(min_length=1)


class HealthSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    probation: float = Field(default=10.0, ge=0, le=3600)
    http: str | None = Field(default=None, pattern=r"^https?://")
    command: list[str] | None = Field(default=None, min_length=1)
    timeout: float = Field(default=5.0, gt=0, le=600)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    app: AppSection
    health: HealthSection = HealthSection()


def parse_manifest(data: bytes, *, where: str = MANIFEST_NAME) -> Manifest:
    """Parse manifest bytes or raise ConfigError that names `where` and the problem."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(
            f"{where} is not valid TOML: {e}", hint="see the manifest format in README.md"
        ) from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(
            f"{where} is invalid: {problems}",
            hint='it needs at least [app] command = ["prog", "arg"]; see README.md',
        ) from None
