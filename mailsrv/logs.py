# -*- test-case-name: tests.test_logs -*-
"""
Log output formats for twistd.

By default twistd writes one text line per event.  For log shippers
(journald with a JSON parser, Loki, Elasticsearch), run::

    twistd --nodaemon --pidfile= --logger=mailsrv.logs.jsonLogger mailsrv ...

to get one JSON object per line, with every structured field of the event
(C{sessionId}, C{endpoint}, C{peer}, C{msgId}, C{account}, C{outcome}...)
as a key, the rendered text as C{text}, and the level and time.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, Optional

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

# Event keys Twisted uses for its own bookkeeping, not worth shipping.
_INTERNAL = frozenset({"log_logger", "log_source", "log_io", "log_trace", "log_legacy", "log_observer"})


def _isJSON(value: Any, depth: int = 0) -> bool:
    """
    Whether C{value} is a JSON scalar, or a list or string-keyed dict of
    them (the filter verdicts of a message), kept as such in the record.
    """
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if depth > 2:
        return False
    if isinstance(value, (list, tuple)):
        return all(_isJSON(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _isJSON(v, depth + 1) for k, v in value.items())
    return False


def eventAsRecord(event: dict[str, Any]) -> dict[str, Any]:
    """
    A flat, JSON-serialisable record of a log event.
    """
    record: dict[str, Any] = {
        "time": event.get("log_time"),
        "level": getattr(event.get("log_level"), "name", None),
        "namespace": event.get("log_namespace"),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _INTERNAL or key in record:
            continue
        record[key] = value if _isJSON(value) else repr(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return record


@implementer(ILogObserver)
class JSONLinesObserver:
    def __init__(self, out: Optional[IO[str]] = None) -> None:
        self._out = out if out is not None else sys.stdout

    def __call__(self, event: dict[str, Any]) -> None:
        self._out.write(json.dumps(eventAsRecord(event), ensure_ascii=False, default=repr) + "\n")
        self._out.flush()


def jsonLogger() -> JSONLinesObserver:
    """
    The observer factory named by C{twistd --logger}.
    """
    return JSONLinesObserver()
