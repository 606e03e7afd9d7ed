"""
The JSON log format.
"""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogPublisher

from mailsrv.logs import JSONLinesObserver


def test_structured_fields_become_keys() -> None:
    """
    Each event is one JSON line with its fields as keys and the rendered
    text; objects that JSON cannot hold are written as their repr.
    """
    out = io.StringIO()
    publisher = LogPublisher(JSONLinesObserver(out))
    log = Logger(namespace="mailsrv.test", observer=publisher)
    log.info(
        "Accepted {msgId} from {peer}",
        msgId="abc",
        peer="192.0.2.1",
        size=42,
        thing=object(),
        verdicts={"rspamd": "add-header"},
        nested={"x": [object()]},
    )
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["text"] == "Accepted abc from 192.0.2.1"
    assert (record["msgId"], record["peer"], record["size"], record["level"]) == ("abc", "192.0.2.1", 42, "info")
    assert record["namespace"] == "mailsrv.test"
    assert record["thing"].startswith("<object object")
    assert record["verdicts"] == {"rspamd": "add-header"}
    assert isinstance(record["nested"], str)


def test_failures_carry_traceback() -> None:
    """
    log.failure events include the traceback text.
    """
    out = io.StringIO()
    log = Logger(observer=LogPublisher(JSONLinesObserver(out)))
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("Boom in {where}", where="test")
    record = json.loads(out.getvalue())
    assert "ZeroDivisionError" in record["failure"]
    assert record["level"] == "critical"
