# -*- test-case-name: tests.ops.test_metrics -*-
"""
Prometheus metrics counted from the structured log events.

The protocols already emit one event per state change with stable fields
(C{endpoint}, C{outcome}, C{tlsVersion}, C{code}...).  L{MetricsObserver}
is a C{twisted.logger} observer that turns those events into counters, so
the protocol code knows nothing about metrics and every number on
C{/metrics} has a log line an operator can grep behind it.

Each L{Metrics} has its own C{CollectorRegistry} (not the process-global
one), so tests can build as many as they like.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from twisted.application.service import Service
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import implementer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


QUEUE_STATES = ("incoming", "active", "deferred")


class QueueCollector:
    """
    The outbound queue's size and age per state, read from the spool
    directories at scrape time (one directory per message: a few
    C{listdir}/C{stat} calls, cheap at the sizes a small server has).
    """

    def __init__(self, queueDir: Path, clock: Callable[[], float] = time.time) -> None:
        self.queueDir = Path(queueDir)
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size = GaugeMetricFamily("mailsrv_queue_messages", "Messages in the outbound queue", labels=["state"])
        age = GaugeMetricFamily(
            "mailsrv_queue_oldest_age_seconds", "Age of the oldest message in the outbound queue", labels=["state"]
        )
        now = self._clock()
        for state in QUEUE_STATES:
            count, oldest = 0, now
            try:
                entries = list(os.scandir(self.queueDir / state))
            except OSError:
                entries = []
            for entry in entries:
                try:
                    oldest = min(oldest, entry.stat(follow_symlinks=False).st_mtime)
                except OSError:
                    continue
                count += 1
            size.add_metric([state], count)
            age.add_metric([state], max(0.0, now - oldest) if count else 0.0)
        yield size
        yield age


class Metrics:
    """
    The counters; L{observe} is the log observer that feeds them.

    @param queueDir: the outbound spool, for the queue gauges (none if
        L{None}).
    """

    def __init__(self, queueDir: Optional[Path] = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if queueDir is not None:
            r.register(QueueCollector(queueDir, clock))  # type: ignore[arg-type]
        self.deliveries = Counter(
            "mailsrv_deliveries",
            "Outbound recipients by outcome (delivered, returned to the sender) and deferred attempts",
            ["outcome"],
            registry=r,
        )
        self.deliveryAttempts = Counter(
            "mailsrv_delivery_attempts",
            "Outbound delivery attempts per recipient by status (sent, deferred, bounced, expired), "
            "TLS version (none without TLS) and whether the certificate was verified",
            ["status", "tls", "verified"],
            registry=r,
        )
        self.filterVerdicts = Counter(
            "mailsrv_filter_verdicts",
            "Filter verdicts: reject and tempfail per refusal; accept, add-header and quarantine per accepted message",
            ["filter", "verdict"],
            registry=r,
        )
        self.connections = Counter(
            "mailsrv_connections", "Client connections accepted", ["endpoint", "protocol"], registry=r
        )
        self.tls = Counter(
            "mailsrv_tls_handshakes", "TLS handshakes completed", ["endpoint", "version"], registry=r
        )
        self.auth = Counter(
            "mailsrv_auth_attempts", "Authentication attempts by outcome", ["protocol", "outcome"], registry=r
        )
        self.messages = Counter(
            "mailsrv_messages",
            "Messages at the end of DATA/BDAT: accepted or rejected",
            ["endpoint", "result"],
            registry=r,
        )
        self.rejections = Counter(
            "mailsrv_smtp_rejections",
            "SMTP connections, commands and messages refused, by stage, reply code and reason",
            ["endpoint", "stage", "code", "reason"],
            registry=r,
        )
        self.proxyRefused = Counter(
            "mailsrv_proxy_refused", "PROXY protocol connections refused", ["endpoint", "reason"], registry=r
        )
        self.reloads = Counter("mailsrv_reloads", "Configuration reloads by outcome", ["outcome"], registry=r)
        self.commitProcessFailures = Counter(
            "mailsrv_commit_process_failures",
            "Times the commit process (which writes local deliveries) ended on its own",
            registry=r,
        )
        self.unconfirmedDeliveries = Counter(
            "mailsrv_commit_unconfirmed_deliveries",
            "Deliveries a failed commit process left unconfirmed, by outcome (finished, undone: answered 451)",
            ["outcome"],
            registry=r,
        )
        self.up = Gauge("mailsrv_up", "1 while the server runs", registry=r)
        self.up.set(1)

    def observe(self, event: dict[str, Any]) -> None:
        """
        Count one log event, if it is one of those counted.  Never raises:
        a log observer that raises is removed by twisted.logger.
        """
        fmt = event.get("log_format")
        if not isinstance(fmt, str):
            return
        handler = _dispatch(fmt)
        if handler is not None:
            try:
                handler(self, event)
            except Exception:  # a malformed event must not kill metrics
                pass

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _label(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    return "-" if value is None else str(value)[:64]


def _connection(protocol: str) -> Callable[[Metrics, dict[str, Any]], None]:
    def count(m: Metrics, event: dict[str, Any]) -> None:
        m.connections.labels(_label(event, "endpoint"), protocol).inc()

    return count


def _authOutcome(protocol: str) -> Callable[[Metrics, dict[str, Any]], None]:
    def count(m: Metrics, event: dict[str, Any]) -> None:
        if "outcome" in event:
            m.auth.labels(protocol, _label(event, "outcome")).inc()

    return count


def _rejection(stage: str) -> Callable[[Metrics, dict[str, Any]], None]:
    def count(m: Metrics, event: dict[str, Any]) -> None:
        m.rejections.labels(_label(event, "endpoint"), stage, _label(event, "code"), _label(event, "reason")).inc()

    return count


def _smtpRefusal(m: Metrics, event: dict[str, Any]) -> None:
    # The SMTP server's own refusals (sequence, syntax, TLS/AUTH policy,
    # limits, timeouts) carry their stage in the event.
    m.rejections.labels(
        _label(event, "endpoint"), _label(event, "stage"), _label(event, "code"), _label(event, "reason")
    ).inc()


def _smtpConnectionRefused(m: Metrics, event: dict[str, Any]) -> None:
    m.connections.labels(_label(event, "endpoint"), "smtp").inc()
    _smtpRefusal(m, event)


def _accepted(m: Metrics, event: dict[str, Any]) -> None:
    m.messages.labels(_label(event, "endpoint"), "accepted").inc()
    for name, verdict in dict(event.get("verdicts") or {}).items():
        m.filterVerdicts.labels(str(name)[:64], str(verdict)[:64]).inc()


def _refused(m: Metrics, event: dict[str, Any]) -> None:
    m.messages.labels(_label(event, "endpoint"), "rejected").inc()
    m.rejections.labels(_label(event, "endpoint"), "data", _label(event, "code"), _label(event, "reason")).inc()


def _tls(m: Metrics, event: dict[str, Any]) -> None:
    m.tls.labels(_label(event, "endpoint"), _label(event, "tlsVersion")).inc()


def _proxy(m: Metrics, event: dict[str, Any]) -> None:
    m.proxyRefused.labels(_label(event, "endpoint"), _label(event, "outcome")).inc()


def _queueDone(m: Metrics, event: dict[str, Any]) -> None:
    m.deliveries.labels("delivered").inc(int(event.get("delivered") or 0))
    m.deliveries.labels("returned").inc(int(event.get("bounced") or 0))


def _queueDeferred(m: Metrics, event: dict[str, Any]) -> None:
    m.deliveries.labels("deferred").inc()


def _deliveryAttempt(m: Metrics, event: dict[str, Any]) -> None:
    m.deliveryAttempts.labels(
        _label(event, "status"),
        event.get("tlsVersion") or "none",
        "true" if event.get("tlsVerified") else "false",
    ).inc()


def _filterRefusal(m: Metrics, event: dict[str, Any]) -> None:
    m.filterVerdicts.labels(_label(event, "filter"), _label(event, "verdict")).inc()
    if event.get("stage") == "connection":
        # The SMTP server answers these before any command (554, or 421
        # and close); the other stages have their own refusal lines.
        code = "421" if event.get("verdict") == "tempfail" else "554"
        m.rejections.labels(_label(event, "endpoint"), "connect", code, _label(event, "reason")).inc()


def _commitProcessFailed(m: Metrics, event: dict[str, Any]) -> None:
    m.commitProcessFailures.inc()


def _unconfirmedDelivery(m: Metrics, event: dict[str, Any]) -> None:
    m.unconfirmedDeliveries.labels(_label(event, "outcome")).inc()


def _reload(m: Metrics, event: dict[str, Any]) -> None:
    m.reloads.labels(_label(event, "outcome")).inc()


# Event formats (the stable first words of the protocols' log lines).
_PREFIXES: tuple[tuple[str, Callable[[Metrics, dict[str, Any]], None]], ...] = (
    ("SMTP connection from {peer} on {endpoint} refused", _smtpConnectionRefused),
    ("SMTP connection from {peer} on {endpoint}", _connection("smtp")),
    ("SMTP {command} from {peer} on {endpoint} refused", _smtpRefusal),
    ("SMTP timeout from {peer} on {endpoint}", _smtpRefusal),
    ("IMAP connection from {peer} on {endpoint}", _connection("imap")),
    ("POP3 connection from {peer} on {endpoint}", _connection("pop3")),
    ("ManageSieve connection from {peer} on {endpoint}", _connection("managesieve")),
    ("AUTH ", _authOutcome("smtp")),
    ("IMAP login {outcome}", _authOutcome("imap")),
    ("POP3 login {outcome}", _authOutcome("pop3")),
    ("ManageSieve login {outcome}", _authOutcome("managesieve")),
    ("Accepted {msgId}", _accepted),
    ("Refused {msgId}", _refused),
    ("MAIL FROM {mailFrom} refused", _rejection("mail")),
    ("RCPT {rcpt} refused", _rejection("rcpt")),
    ("TLS established: {tlsVersion}", _tls),
    ("PROXY connection from {peer} on {endpoint} refused", _proxy),
    ("Queue entry {msgId} done:", _queueDone),
    ("Queue entry {msgId} deferred", _queueDeferred),
    ("{msgId}: to=<{rcpt}>", _deliveryAttempt),
    ("Filter {filter} rejected", _filterRefusal),
    ("Filter {filter} deferred", _filterRefusal),
    ("Reload refused", _reload),
    ("Reloaded {source}", _reload),
    ("Commit process ended ({reason})", _commitProcessFailed),
    ("Unconfirmed delivery {tmpPath} {outcome}", _unconfirmedDelivery),
)


def _dispatch(fmt: str) -> Optional[Callable[[Metrics, dict[str, Any]], None]]:
    for prefix, handler in _PREFIXES:
        if fmt.startswith(prefix):
            if prefix.endswith("on {endpoint}") and fmt.endswith("closed"):
                return None  # the close line of a connection
            return handler
    return None


@implementer(ILogObserver)
class _Observer:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, event: dict[str, Any]) -> None:
        self._metrics.observe(event)


class MetricsService(Service):
    """
    Adds the metrics observer to the global log publisher while the server
    runs (the protocols log through it).
    """

    name = "metrics"

    def __init__(self, metrics: Metrics, publisher: Any = globalLogPublisher) -> None:
        self.metrics = metrics
        self._publisher = publisher
        self._observer = _Observer(metrics)

    def startService(self) -> None:
        super().startService()
        self._publisher.addObserver(self._observer)

    def stopService(self) -> None:
        super().stopService()
        self._publisher.removeObserver(self._observer)
