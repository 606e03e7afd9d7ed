# -*- test-case-name: tests.integration.test_service -*-
"""
Build the running server from a validated L{Config}.

This is the only place that wires concrete classes together: one TLS
creator, one directory, one store, one portal and realm, one pipeline, and
a listener per endpoint address.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.mail import imap4
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailsrv.auth.checkers import AccountChecker
from mailsrv.auth.throttle import AuthThrottle, BanFile, ThrottledPortal, banFilePath
from mailsrv.auth.directory import FileDirectory
from mailsrv.auth.realm import MailRealm
from mailsrv import systemd
from mailsrv.config.load import parseListen, systemdSocketName
from mailsrv.config.schema import Config
from mailsrv.delivery.local import LocalDelivery
from mailsrv.filters.clamav import clamavFilters
from mailsrv.filters.dnsbl import dnsblFilters
from mailsrv.filters.greylist import greylistFilters
from mailsrv.filters.ratelimit import rateLimitFilters
from mailsrv.filters.rspamd import rspamdParts
from mailsrv.filters.rspamd_learn import rspamdLearner
from mailsrv.filters.senderauth import senderAuthFilters, senderAuthModifiers
from mailsrv.delivery.quota import QuotaEnforcingTarget
from mailsrv.pipeline.dkim import signerFor
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.routing import Router
from mailsrv.pipeline.submission import SubmissionModifier
from mailsrv.queue.service import OutboundService
from mailsrv.policy.sender import OwnedSenderPolicy
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode
from mailsrv.policy.deadline import SessionTimeouts
from mailsrv.policy.limits import ConnectionLimiter, UserAddressLimiter
from mailsrv.policy.proxy import ProxyProtocolFactory, parseNetworks
from mailsrv.ops.reload import ReloadService, Reloader, pidfilePath
from mailsrv.protocols.imap.account import accountFactory
from mailsrv.protocols.imap.server import IMAPFactory
from mailsrv.protocols.managesieve.server import ManageSieveFactory, ManageSieveLimits
from mailsrv.protocols.pop3.server import IPOP3Maildrop, POP3Factory, POP3Limits, maildropFactory
from mailsrv.protocols.smtp.server import SMTPFactory
from mailsrv.storage.committers import ProcessCommitter
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.quota import FileQuota, maildirUsage
from mailsrv.storage.sieve_scripts import MaildirSieveScripts
from mailsrv.storage.sieve_store import MaildirSieveStore
from mailsrv.storage.vacation_memory import MaildirVacationMemory
from mailsrv.tls import ServerTLS, serverTLSFromConfig

log = Logger()


def listenEndpoint(reactor: Any, spec: str) -> IStreamServerEndpoint:
    """
    The endpoint for one listen spec: C{host:port}, or C{systemd:NAME} for
    a socket passed by systemd.
    """
    name = systemdSocketName(spec)
    if name is not None:
        try:
            return systemd.adoptedEndpoint(reactor, name)
        except systemd.SocketActivationError as e:
            raise SystemExit(f"mailsrv: {spec}: {e}")
    host, port = parseListen(spec)
    try:
        if ipaddress.ip_address(host).version == 6:
            return TCP6ServerEndpoint(reactor, port, interface=host)
    except ValueError:
        pass  # a host name: resolved by the IPv4 endpoint
    return TCP4ServerEndpoint(reactor, port, interface=host)


def _isLoopback(spec: str) -> bool:
    if systemdSocketName(spec) is not None:
        return False  # bound by systemd, to an address not known here
    host, _ = parseListen(spec)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class MailService(MultiService):
    """
    The whole server: a L{MultiService} with one child per listening
    address.
    """

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        server = config.server
        for path in (server.dataDir, server.mailDir, server.stateDir, server.configDir, server.dataDir / "spool"):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tls: ServerTLS = serverTLSFromConfig(config.tls, server.hostname, server.dataDir)
        # Checking the files on every lookup costs two stat() calls and makes
        # an account added with the `mailsrv` command usable at once.
        self.directory = FileDirectory(server.configDir, server.domains, reloadInterval=0.0)
        # Deliveries are made durable by a commit process beside this one
        # (see mailsrv.storage.commit_worker), started with the service.
        self.committer = ProcessCommitter(reactor)
        self.store = MaildirStore(server.mailDir, committer=self.committer)
        realm = MailRealm()
        self.quota = FileQuota(server.configDir, maildirUsage(server.mailDir))
        realm.registerAvatarFactory(imap4.IAccount, accountFactory(self.store, self.quota))
        realm.registerAvatarFactory(IPOP3Maildrop, maildropFactory(self.store))
        checkers = [AccountChecker(self.directory)]
        throttling = config.authThrottle
        if throttling.enabled:
            self.authThrottle: Optional[AuthThrottle] = AuthThrottle(
                reactor,
                maxFailures=throttling.maxFailures,
                window=throttling.window,
                banTime=throttling.banTime,
                maxAccountFailures=throttling.maxAccountFailures,
                banFile=BanFile(banFilePath(config)),
                exempt=throttling.exempt,
            )
            self.portal: Portal = ThrottledPortal(realm, checkers, self.authThrottle)
        else:
            self.authThrottle = None
            self.portal = Portal(realm, checkers)
        limits = config.limits
        # One count for every SMTP endpoint, as Postfix counts per smtpd.
        self.smtpConnections = ConnectionLimiter(
            limits.maxConnections, limits.maxConnectionsPerIP, limits.connectionLimitExceptions
        )
        # Likewise one count for all IMAP and one for all POP3 endpoints (as
        # Dovecot's imap and pop3 services), and per protocol one count of
        # logged-in sessions per account and client address.
        self.imapConnections = ConnectionLimiter(
            limits.imapMaxConnections, limits.imapMaxConnectionsPerIP, limits.connectionLimitExceptions
        )
        self.pop3Connections = ConnectionLimiter(
            limits.pop3MaxConnections, limits.pop3MaxConnectionsPerIP, limits.connectionLimitExceptions
        )
        self.imapUserAddresses = UserAddressLimiter(limits.maxConnectionsPerUserIP)
        self.pop3UserAddresses = UserAddressLimiter(limits.maxConnectionsPerUserIP)
        # ManageSieve: the scripts delivery runs, in the accounts' Maildir
        # directories (one size limit for both), and counts of their own
        # (no I/O until an endpoint is used).
        managesieve = config.managesieve
        self.manageSieveScripts = MaildirSieveStore(
            server.mailDir, managesieve.maxScripts, config.sieve.maxScriptSize, reactor=reactor
        )
        self.manageSieveConnections = ConnectionLimiter(
            managesieve.maxConnections, managesieve.maxConnectionsPerIP, limits.connectionLimitExceptions
        )
        self.manageSieveUserAddresses = UserAddressLimiter(limits.maxConnectionsPerUserIP)
        submission = config.submission
        self.outbound = OutboundService(config, reactor)
        self.outbound.setServiceParent(self)
        spamFilters, spamModifiers = rspamdParts(config, reactor)
        self.spamReports = rspamdLearner(config, self.store, reactor)
        self.localDelivery = LocalDelivery(
            self.store,
            MaildirSieveScripts(self.store, config.sieve.maxScriptSize, deferToThread) if config.sieve.enabled else None,
            vacations=MaildirVacationMemory(self.store),
            runBlocking=deferToThread,
            spoolDir=server.dataDir / "spool",
            hostname=server.hostname,
        )
        self.pipeline = Pipeline(
            Router(self.directory),
            QuotaEnforcingTarget(self.localDelivery, self.quota),
            server.hostname,
            remote=self.outbound.target,
            # Cheap and final checks first: a refusal stops the stage.
            filters=[
                *dnsblFilters(config, reactor),
                *rateLimitFilters(config, reactor),
                *greylistFilters(config, reactor),
                *senderAuthFilters(config),
                *clamavFilters(config, reactor),
                *spamFilters,
            ],
            modifiers=[
                *senderAuthModifiers(config),
                *spamModifiers,
                SubmissionModifier(self.directory, server.hostname, submission.spoofProtection),
            ],
            senderPolicy=OwnedSenderPolicy(self.directory) if submission.spoofProtection else None,
            hideSubmitterPeer=not submission.showClientIP,
            # On the data disk: /tmp may be RAM (tmpfs) and is private under systemd.
            spoolDir=server.dataDir / "spool",
        )
        if config.dkim.enabled:
            # Last modifier: the signature covers the headers the others add.
            self.pipeline.modifiers.append(signerFor(server.configDir, config.dkim.selector, reactor))
        self.outbound.attachBounceTarget(self.pipeline)
        # Sieve redirects and vacation replies enter the pipeline too.
        self.localDelivery.attachOutbound(self.pipeline)
        for policy in config.endpoints:
            self._warnIfInsecure(policy)
            factory = self._factoryFor(policy)
            if policy.tls is TLSMode.IMPLICIT:
                factory = TLSMemoryBIOFactory(self.tls, False, factory)
            if policy.proxyProtocol:
                # Outermost: the PROXY header precedes any TLS handshake.
                factory = ProxyProtocolFactory(
                    factory, parseNetworks(policy.trustedProxies), policy.name, reactor
                )
            for spec in policy.listen:
                child = StreamServerEndpointService(listenEndpoint(reactor, spec), factory)
                # Fail the start (and twistd) when a port cannot be bound,
                # instead of logging and running without it.
                child._raiseSynchronously = True
                child.setName(f"{policy.name} {spec}")
                child.setServiceParent(self)
        adopted = [n for p in config.endpoints for n in map(systemdSocketName, p.listen) if n is not None]
        if adopted:
            for name in systemd.unusedSocketNames(adopted):
                log.warn(
                    "systemd passed the socket {socketName}, which no endpoint listens on",
                    socketName=name,
                )
        # SIGHUP, `systemctl reload` and `mailsrv reload` (mailsrv.ops.reload).
        ReloadService(Reloader(self), pidfilePath(config), reactor).setServiceParent(self)

    def _factoryFor(self, policy: EndpointPolicy) -> ServerFactory:
        hostname = self.config.server.hostname
        tls = None if policy.tls is TLSMode.NONE else self.tls
        if policy.protocol is Protocol.HTTP:
            from mailsrv.http.site import siteForService

            return siteForService(self)
        if policy.protocol in (Protocol.SMTP, Protocol.SUBMISSION):
            return SMTPFactory(
                policy,
                self.portal,
                self.pipeline,
                tls,
                hostname,
                self.config.limits,
                self.reactor,
                limiter=self.smtpConnections,
            )
        limits = self.config.limits
        if policy.protocol is Protocol.POP3:
            return POP3Factory(
                policy,
                self.portal,
                tls,
                hostname,
                clock=self.reactor,
                limits=POP3Limits(
                    loginTimeout=limits.loginTimeout,
                    idleTimeout=limits.pop3IdleTimeout,
                    commandTimeout=limits.commandTimeout,
                ),
                connections=self.pop3Connections,
                userAddresses=self.pop3UserAddresses,
            )
        if policy.protocol is Protocol.MANAGESIEVE:
            return self._manageSieveFactory(policy, tls)
        return IMAPFactory(
            policy,
            self.portal,
            tls,
            hostname,
            clock=self.reactor,
            maxMessageSize=limits.messageSize,
            timeouts=SessionTimeouts(
                login=limits.loginTimeout,
                idle=limits.imapIdleTimeout,
                command=limits.commandTimeout,
                data=limits.dataTimeout,
                minDataRate=limits.minDataRate,
            ),
            connections=self.imapConnections,
            userAddresses=self.imapUserAddresses,
            spamReports=self.spamReports,
        )

    def _manageSieveFactory(self, policy: EndpointPolicy, tls: Optional[ServerTLS]) -> ServerFactory:
        from twisted.internet import threads

        limits = self.config.limits
        return ManageSieveFactory(
            policy,
            self.portal,
            self.manageSieveScripts,
            tls,
            self.config.server.hostname,
            clock=self.reactor,
            limits=ManageSieveLimits(
                loginTimeout=limits.loginTimeout,
                idleTimeout=self.config.managesieve.idleTimeout,
                commandTimeout=limits.commandTimeout,
                dataTimeout=limits.dataTimeout,
                minDataRate=limits.minDataRate,
            ),
            connections=self.manageSieveConnections,
            userAddresses=self.manageSieveUserAddresses,
            runInThread=lambda f, *args: threads.deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), f, *args
            ),
        )

    def _warnIfInsecure(self, policy: EndpointPolicy) -> None:
        if policy.auth and policy.tls is TLSMode.NONE:
            exposed = [spec for spec in policy.listen if not _isLoopback(spec)]
            if exposed:
                log.warn(
                    "Endpoint {endpoint} accepts passwords without TLS on {listen}",
                    endpoint=policy.name,
                    listen=", ".join(exposed),
                )

    def privilegedStartService(self) -> None:
        # Listeners bind here (before twistd drops privileges).  A port that
        # cannot be bound stops the start with one line, not a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(
                f"mailsrv: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}"
            )

    def startService(self) -> None:
        removed = self.store.cleanTmp()
        log.info(
            "mailsrv starting as {hostname} (config {source}); removed {removed} stale tmp files",
            hostname=self.config.server.hostname,
            source=self.config.source,
            removed=removed,
        )
        self.committer.start()
        super().startService()
        for policy in self.config.endpoints:
            log.info(
                "Endpoint {endpoint}: {protocol} on {listen}, TLS {tls}, auth {auth}",
                endpoint=policy.name,
                protocol=policy.protocol.value,
                listen=", ".join(policy.listen),
                tls=policy.tls.value,
                auth="offered" if policy.auth else "off",
            )
        # Every port is bound by now (privilegedStartService): Type=notify
        # units may consider the server up.
        systemd.notify("READY=1")

    def stopService(self) -> "Deferred[None] | None":
        systemd.notify("STOPPING=1")
        # The commit process stops last: deliveries still being committed
        # when the listeners close finish first.
        return maybeDeferred(super().stopService).addBoth(
            lambda result: self.committer.stop().addCallback(lambda _: result)
        )
