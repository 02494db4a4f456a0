"""The agent's client for the control plane: enroll and check in, over urllib3.

urllib3 rather than httpx: the agent already loads it for TUF, and every megabyte of an
idle agent counts on 50,000 hosts. Server error bodies map back to the same UptendError
classes the server raised; network trouble is a TransientError.
"""

import json
from typing import Any, TypeVar

import urllib3
from pydantic import BaseModel, ValidationError

from uptend.errors import BY_NAME, AuthError, TransientError, UptendError
from uptend.protocol import CheckIn, Directives

M = TypeVar("M", bound=BaseModel)


class ControlClient:
    def __init__(self, server: str, credential: str | None = None, timeout_s: float = 30.0):
        self.server = server.rstrip("/") + "/"
        self.credential = credential
        self._http = urllib3.PoolManager(
            num_pools=2,
            timeout=urllib3.Timeout(connect=10.0, read=timeout_s),
            retries=False,
        )

    def post(self, path: str, body: BaseModel, answer: type[M]) -> M:
        headers = {"Content-Type": "application/json"}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        url = self.server + path.lstrip("/")
        try:
            response = self._http.request(
                "POST", url, body=body.model_dump_json().encode(), headers=headers
            )
        except urllib3.exceptions.HTTPError as e:
            raise TransientError(
                f"cannot reach the server at {self.server}: {e}",
                hint="the agent keeps its apps running and retries with backoff",
            ) from None
        if response.status >= 400:
            raise _error_from(response.status, response.data)
        try:
            return answer.model_validate_json(response.data)
        except ValidationError as e:
            raise TransientError(f"the server sent an unexpected answer to {path}: {e}") from None

    def checkin(self, body: CheckIn, last: Directives | None) -> Directives:
        """Check in, saying which directives the agent holds; `last` itself if they still hold.

        The server answers `unchanged` (a few bytes) when neither the generation of `last`
        nor the agent's state moved since it last recorded them.
        """
        sent = body.model_copy(update={"generation": last.generation if last else None})
        answer = self.post("api/v1/checkin", sent, Directives)
        return last if answer.unchanged and last is not None else answer


def _error_from(status: int, data: bytes) -> UptendError:
    try:
        body: Any = json.loads(data)
        cls = BY_NAME.get(str(body.get("error")), UptendError)
        return cls(str(body["message"]), hint=str(body.get("hint", "")))
    except (ValueError, KeyError, AttributeError, TypeError):
        pass
    if status in (401, 403):
        return AuthError(f"the server refused the credential ({status})")
    return TransientError(f"the server answered {status}")
