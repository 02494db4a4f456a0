"""The `server` fixture of tests/server: one real server per dialect, shared by a module.

A module that needs more set-up on it overrides `server` with its own fixture of that name
that takes this one (tests/server/test_credential_cache.py).
"""

from collections.abc import Iterator

import pytest

from tests.support.fleet import Fleet
from tests.support.servers import DIALECTS, dialect_server


@pytest.fixture(scope="module", params=DIALECTS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with dialect_server(request, tmp_path_factory) as fleet:
        yield fleet
