"""No input gives a 500: schemathesis over the whole OpenAPI of a real server on SQLite.

Every operation is called with generated valid and invalid input, authenticated as the
route needs (the check-in as an enrolled agent, the rest as the admin), against a seeded
server (a group, an app, a release, an agent) so that inputs reach the services. The checks
are all of schemathesis's: no server error, and only the status codes, content types,
headers and bodies the OpenAPI documents.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case, CheckFunction, GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.server.test_agent_api import admin_client, enrolled, upload
from tests.support.fleet import Fleet

EXAMPLES = 30  # per operation and mode


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str]]:
    # Fuzzing fails authentications by the hundred: with the limiter on, most cases would
    # only meet its 429 (documented, and tested in test_credentials.py) and never the routes.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UPTEND_AUTH_FAILURES_PER_MIN", "0")  # read by the server at its start
        with Fleet(Path(tmp_path_factory.mktemp("schemathesis"))) as fleet:
            with admin_client(fleet) as http:
                http.put("/api/v1/groups/default", json={"app": "demo"}).raise_for_status()
            upload(fleet, "demo", "1.0")
            yield fleet, enrolled(fleet, "fuzzed")


@pytest.fixture(scope="module")
def api_schema(seeded: tuple[Fleet, str]) -> BaseSchema:
    fleet, _ = seeded
    return schemathesis.openapi.from_url(f"{fleet.url}/openapi.json")


# Every operation of the OpenAPI, and whether it takes input (the first test holds this to
# the served schema); an operation without input has no invalid request to generate.
OPERATIONS = {
    "GET /api/v1/agents": True,
    "GET /api/v1/agents/{key}": True,
    "DELETE /api/v1/agents/{key}": True,
    "POST /api/v1/agents/{key}/revoke": True,
    "POST /api/v1/agents/{key}/rotate-credential": True,
    "POST /api/v1/agents/{key}/labels": True,
    "GET /api/v1/freeze": False,
    "PUT /api/v1/freeze": True,
    "DELETE /api/v1/freeze": False,
    "GET /api/v1/tokens": False,
    "POST /api/v1/tokens": True,
    "POST /api/v1/tokens/{token_id}/revoke": True,
    "GET /api/v1/fleet/summary": False,
    "GET /api/v1/groups": False,
    "GET /api/v1/releases": True,
    "GET /api/v1/server/stats": False,
    "GET /healthz": False,
    "POST /api/v1/agents/{key}/apps/{app}/retry": True,
    "POST /api/v1/checkin": True,
    "POST /api/v1/enroll": True,
    "POST /api/v1/releases": True,
    "PUT /api/v1/groups/{name}": True,
    "PUT /api/v1/channels/{app}/{channel}/plan": True,
    "GET /api/v1/channels/{app}/{channel}/plan": True,
    "GET /api/v1/channels/{app}/{channel}/preview": True,
    "GET /api/v1/rollouts/{app}": True,
    "POST /api/v1/rollouts/{app}/{action}": True,
    "GET /api/v1/commands": True,
    "POST /api/v1/commands": True,
    "POST /api/v1/wait": True,
    "POST /api/v1/apps/{app}/config": True,
    "GET /api/v1/apps/{app}/config": True,
    "POST /api/v1/apps/{app}/config/rollback": True,
    "GET /api/v1/apps/{app}/config/{version}": True,
    "GET /api/v1/apps/{app}/config-current": True,
}
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label, takes_input in OPERATIONS.items() if takes_input
]
# Schema-valid input the services refuse with a documented 4xx, by rules a JSON schema cannot
# state (a cursor the server issued, a group change that changes something, a report time
# within the years 1970-2999): "valid data is accepted" does not hold for this API.
EXCLUDED: list[CheckFunction] = [positive_data_acceptance]


def test_every_operation_is_fuzzed(api_schema: BaseSchema) -> None:
    found = {}
    for result in api_schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]  # an Err would raise here, as it should
        found[op.label] = bool(op.path_parameters or op.query or op.body)
    assert found == OPERATIONS


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {m.value}" for label, m in CASES])
def test_no_input_gives_a_server_error_or_an_undocumented_answer(
    api_schema: BaseSchema, seeded: tuple[Fleet, str], label: str, mode: GenerationMode
) -> None:
    fleet, credential = seeded
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None
    token = credential if label == "POST /api/v1/checkin" else fleet.admin_token

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED
        )

    call()
