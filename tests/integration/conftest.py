"""
A real mailsrv process per test session (per xdist worker), on free
loopback ports, with two accounts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer

PASSWORD = "secret"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("mailsrv"))
    srv.addUser("alice@example.test", PASSWORD)
    srv.addUser("bob@example.test", PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RunningServer]:
    """
    A server of the test's own, for tests that change its files.
    """
    srv = RunningServer(tmp_path)
    srv.addUser("alice@example.test", PASSWORD)
    yield srv
    srv.stop()
