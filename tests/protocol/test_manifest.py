"""The manifest refuses, naming each problem, what pydantic's extra="forbid" strict models did.

Table-driven: each bad manifest with the exact `loc: message` problems it must report, so
a release author reading `uptend release publish`'s error sees every mistake at once.
"""

import pytest

from uptend.errors import ConfigError
from uptend.protocol.manifest import AppSection, HealthSection, Manifest, parse_manifest

APP = '[app]\ncommand = ["x"]\n'
HINT = 'it needs at least [app] command = ["prog", "arg"]; see README.md'

GOOD: dict[str, tuple[str, Manifest]] = {
    "minimal": (APP, Manifest(app=AppSection(command=["x"]))),
    "everything": (
        '[app]\ncommand = ["python3", "app.py"]\n[health]\nprobation = 0\n'
        'http = "https://127.0.0.1:8443/h"\ncommand = ["./check.sh", "-q"]\ntimeout = 600\n',
        Manifest(
            app=AppSection(command=["python3", "app.py"]),
            health=HealthSection(
                probation=0.0,
                http="https://127.0.0.1:8443/h",
                command=["./check.sh", "-q"],
                timeout=600.0,
            ),
        ),
    ),
    "int-and-float-bounds": (
        APP + "[health]\nprobation = 3600.0\ntimeout = 0.001\nhttp = 'http://h'\n",
        Manifest(
            app=AppSection(command=["x"]),
            health=HealthSection(probation=3600.0, timeout=0.001, http="http://h"),
        ),
    ),
    "empty-health-table": (APP + "[health]\n", Manifest(app=AppSection(command=["x"]))),
}

BAD: dict[str, tuple[str, list[str]]] = {
    "empty": ("", ["app: Field required"]),
    "no-app": ("[health]\nprobation = 1\n", ["app: Field required"]),
    "app-not-a-table": ("app = 1\n", ["app: Input should be a table"]),
    "health-not-a-table": (
        'health = "x"\n' + APP,
        ["health: Input should be a table"],
    ),
    "no-command": ("[app]\n", ["app.command: Field required"]),
    "command-a-string": (
        '[app]\ncommand = "x"\n',
        ["app.command: Input should be a valid list"],
    ),
    "command-empty": (
        "[app]\ncommand = []\n",
        ["app.command: List should have at least 1 item after validation, not 0"],
    ),
    "command-items": (
        '[app]\ncommand = ["ok", 1, "", true]\n',
        [
            "app.command.1: Input should be a valid string",
            "app.command.2: String should have at least 1 character",
            "app.command.3: Input should be a valid string",
        ],
    ),
    "unknown-keys": (
        '[app]\ncommand = ["x"]\nhealth = 3\n[health]\nprobe = 1\n[extra]\n',
        [
            "app.health: Extra inputs are not permitted",
            "health.probe: Extra inputs are not permitted",
            "extra: Extra inputs are not permitted",
        ],
    ),
    "probation-bool": (
        APP + "[health]\nprobation = true\n",
        ["health.probation: Input should be a valid number"],
    ),
    "probation-string": (
        APP + '[health]\nprobation = "5"\n',
        ["health.probation: Input should be a valid number"],
    ),
    "probation-date": (
        APP + "[health]\nprobation = 1979-05-27\n",
        ["health.probation: Input should be a valid number"],
    ),
    "probation-range": (
        APP + "[health]\nprobation = -0.5\n",
        ["health.probation: Input should be greater than or equal to 0"],
    ),
    "probation-over": (
        APP + "[health]\nprobation = 3601\n",
        ["health.probation: Input should be less than or equal to 3600"],
    ),
    "nan-and-inf": (
        APP + "[health]\nprobation = nan\ntimeout = inf\n",
        [
            "health.probation: Input should be a finite number",
            "health.timeout: Input should be a finite number",
        ],
    ),
    "timeout-zero": (
        APP + "[health]\ntimeout = 0\n",
        ["health.timeout: Input should be greater than 0"],
    ),
    "timeout-over": (
        APP + "[health]\ntimeout = 600.5\n",
        ["health.timeout: Input should be less than or equal to 600"],
    ),
    "http-scheme": (
        APP + '[health]\nhttp = "ftp://x"\n',
        ["health.http: String should match pattern '^https?://'"],
    ),
    "http-not-string": (
        APP + "[health]\nhttp = 80\n",
        ["health.http: Input should be a valid string"],
    ),
    "health-command-string": (
        APP + '[health]\ncommand = "./check.sh"\n',
        ["health.command: Input should be a valid list"],
    ),
    "everything-at-once": (
        '[app]\ncommand = []\n[health]\nprobation = -1\nhttp = "x"\n'
        "command = []\ntimeout = 0\nx = 1\n",
        [
            "app.command: List should have at least 1 item after validation, not 0",
            "health.probation: Input should be greater than or equal to 0",
            "health.http: String should match pattern '^https?://'",
            "health.command: List should have at least 1 item after validation, not 0",
            "health.timeout: Input should be greater than 0",
            "health.x: Extra inputs are not permitted",
        ],
    ),
}


@pytest.mark.parametrize("toml", list(GOOD), ids=list(GOOD))
def test_good_manifests_parse(toml: str) -> None:
    text, expected = GOOD[toml]
    assert parse_manifest(text.encode()) == expected


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_manifests_name_where_and_every_problem(case: str) -> None:
    text, problems = BAD[case]
    with pytest.raises(ConfigError) as caught:
        parse_manifest(text.encode(), where="r.tgz:uptend.toml")
    assert str(caught.value) == f"r.tgz:uptend.toml is invalid: {'; '.join(problems)}"
    assert caught.value.hint == HINT


@pytest.mark.parametrize("data", [b"[app\n", b"\xff", b"a = 1\na = 2\n"])
def test_bytes_that_are_not_toml_are_a_config_error(data: bytes) -> None:
    with pytest.raises(ConfigError, match=r"^uptend.toml is not valid TOML: ") as caught:
        parse_manifest(data)
    assert caught.value.hint == "see the manifest format in README.md"


def test_sections_are_frozen_and_keyword_only() -> None:
    health = HealthSection()
    assert (health.probation, health.http, health.command, health.timeout) == (
        10.0,
        None,
        None,
        5.0,
    )
    with pytest.raises(AttributeError):
        health.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        AppSection(["x"])  # type: ignore[call-arg]
