"""One parser of error bodies for the agent and the CLI: ours round-trip, others by status."""

import json

import pytest

from uptend.errors import BY_NAME, AuthError, TransientError, UptendError
from uptend.protocol import Outcome, error_from_body
from uptend.protocol.reasons import FAILED_OUTCOMES


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_every_error_class_comes_back_as_itself(name: str) -> None:
    body = json.dumps({"error": name, "message": "it broke", "hint": "fix it"}).encode()
    error = error_from_body(409, body)
    assert type(error) is BY_NAME[name]
    assert (error.message, error.hint) == ("it broke", "fix it")


def test_an_unknown_class_is_a_plain_uptend_error() -> None:
    error = error_from_body(400, b'{"error": "FromTheFuture", "message": "m"}')
    assert type(error) is UptendError
    assert (error.message, error.hint) == ("m", "")


@pytest.mark.parametrize("status", [401, 403])
def test_a_foreign_refusal_is_an_auth_error(status: int) -> None:
    error = error_from_body(status, b"<html>no</html>", credential="token", hint="check --token")
    assert isinstance(error, AuthError)
    assert error.message == f"the server refused the token ({status})"
    assert error.hint == "check --token"


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (422, b'{"detail": [{"loc": ["query", "limit"]}]}', '[{"loc": ["query", "limit"]}]'),
        (404, b'{"detail": "Not Found"}', '"Not Found"'),
        (502, b"<html>bad gateway</html>", "<html>bad gateway</html>"),
        (500, b"\xff\xfe", "\ufffd"),
        (503, b"[1, 2]", "[1, 2]"),
    ],
)
def test_any_other_foreign_body_is_transient(status: int, body: bytes, says: str) -> None:
    """An agent can only retry it; the message still says what came back."""
    error = error_from_body(status, body, path="/api/v1/x")
    assert isinstance(error, TransientError)
    assert error.message.startswith(f"the server answered {status} to /api/v1/x: ")
    assert says in error.message


def test_outcomes_that_count_as_failures() -> None:
    assert {o.value for o in FAILED_OUTCOMES} == {"failed", "rolled_back", "rollback_failed"}
    assert {o.value for o in Outcome} == {
        "installed", "failed", "rolled_back", "rollback_failed", "refused", "deferred",
    }  # fmt: skip
