"""
Helpers shared by the storage tests: reading already-fired Deferreds.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


def successResultOf(d: "Deferred[T]") -> T:
    """
    The result of a Deferred that must already have succeeded (the stores
    under test run their blocking work synchronously).
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def failureResultOf(d: "Deferred[Any]", *errorTypes: type) -> Failure:
    """
    The failure of a Deferred that must already have failed with one of
    C{errorTypes}.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "Deferred has not fired"
    assert isinstance(results[0], Failure), f"Deferred succeeded: {results[0]!r}"
    if errorTypes:
        assert results[0].check(*errorTypes), results[0]
    return results[0]


def synchronousRunner(f: Any, *args: Any, **kwargs: Any) -> "Deferred[Any]":
    """
    A C{runInThread} that runs C{f} at once, on the calling thread.
    """
    from twisted.internet.defer import maybeDeferred

    return maybeDeferred(f, *args, **kwargs)
