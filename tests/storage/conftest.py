"""
Fixtures for the storage tests: C{store} runs a test once per backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


from .helpers import synchronousRunner

BACKENDS = ["memory", "maildir"]


def _memoryFactory(tmpPath: Path) -> Callable[[], Any]:
    from mailsrv.storage.memory import MemoryMailStore

    store = MemoryMailStore()
    return lambda: store


def _maildirFactory(tmpPath: Path) -> Callable[[], Any]:
    from mailsrv.storage.maildir import MaildirStore

    return lambda: MaildirStore(
        tmpPath / "mail", runInThread=synchronousRunner, hostname="test.example"
    )


FACTORIES = {"memory": _memoryFactory, "maildir": _maildirFactory}


@pytest.fixture(params=BACKENDS)
def storeFactory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """
    A callable returning a store of the parametrised backend.  For backends
    that persist, each call is a new store object over the same data (as
    after a restart); the memory backend returns the same store.
    """
    return FACTORIES[request.param](tmp_path)


@pytest.fixture
def store(storeFactory: Callable[[], Any]) -> Any:
    """
    A store of the parametrised backend.
    """
    return storeFactory()
