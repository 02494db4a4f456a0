"""The agent's client for the control plane: enroll and check in, over urllib3.

urllib3 rather than httpx: the agent already loads it for TUF, and every megabyte of an
idle agent counts on 50,000 hosts. Server error bodies map back to the same UptendError
classes the server raised; network trouble is a TransientError.
"""

from typing import TypeVar

import urllib3
from pydantic import BaseModel, ValidationError

from uptend.errors import TransientError
from uptend.protocol import error_from_body

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
            raise error_from_body(response.status, response.data)
        try:
            return answer.model_validate_json(response.data)
        except ValidationError as e:
            raise TransientError(f"the server sent an unexpected answer to {path}: {e}") from None
