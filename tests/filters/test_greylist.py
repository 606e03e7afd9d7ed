# -*- test-case-name: tests.filters.test_greylist -*-
"""
Tests for L{mailsrv.filters.greylist}, on an injected clock.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.envelope import Address, Envelope, Session
from mailsrv.filters.greylist import GREYLISTED, SAVE_DELAY, Greylist, GreylistFilter, clientNetwork
from mailsrv.interfaces import FilterAction, FilterResult, IFilter
from mailsrv.policy.endpoint import EndpointPolicy, Protocol, TLSMode

MX = EndpointPolicy("smtp", Protocol.SMTP, ("127.0.0.1:25",), TLSMode.NONE, auth=False)
SUBMISSION = EndpointPolicy("submission", Protocol.SUBMISSION, ("127.0.0.1:587",), TLSMode.NONE, auth=True)
RCPT = Address.fromString("alice@example.test")


class ClientNetworkTests(SynchronousTestCase):
    def test_networks(self) -> None:
        """
        IPv4 clients count by /24, IPv6 by /64, IPv4-mapped as IPv4.
        """
        self.assertEqual(clientNetwork("192.0.2.77"), "192.0.2.0/24")
        self.assertEqual(clientNetwork("2001:db8:1:2:3::4"), "2001:db8:1:2::/64")
        self.assertEqual(clientNetwork("::ffff:192.0.2.9"), "192.0.2.0/24")


class GreylistFilterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.greylist = Greylist(self.clock, self.path, delay=300, retryWindow=3600, expiry=86400, autoWhitelist=2)
        self.filter = GreylistFilter(self.greylist)

    def attempt(
        self, peer: str = "192.0.2.10", sender: str = "bob@remote.test", rcpt: Address = RCPT, **session: object
    ) -> FilterResult:
        envelope = Envelope(mailFrom=Address.fromString(sender) if sender else None)
        s = Session(endpoint=session.pop("endpoint", MX), peerHost=peer, **session)  # type: ignore[arg-type]
        return self.successResultOf(self.filter.checkRecipient(s, envelope, rcpt))

    def test_interface(self) -> None:
        """
        The filter provides L{IFilter}.
        """
        self.assertTrue(verifyObject(IFilter, self.filter))

    def test_firstAttemptRefused(self) -> None:
        """
        A new triplet is refused temporarily (the pipeline answers 450
        4.7.1), with a generic reply.
        """
        result = self.attempt()
        self.assertEqual(result.action, FilterAction.TEMPFAIL)
        self.assertEqual(result.reply, GREYLISTED)

    def test_retryTooEarly(self) -> None:
        """
        A retry before the delay is refused again; one after it passes.
        """
        self.attempt()
        self.clock.advance(299)
        self.assertEqual(self.attempt().action, FilterAction.TEMPFAIL)
        self.clock.advance(1)
        self.assertEqual(self.attempt().action, FilterAction.ACCEPT)

    def test_passedStaysPassed(self) -> None:
        """
        A triplet that passed keeps passing at once while it is seen within
        the expiry, and must wait again after a longer silence.
        """
        self.attempt()
        self.clock.advance(300)
        self.attempt()
        self.clock.advance(86000)
        self.assertEqual(self.attempt().action, FilterAction.ACCEPT)
        self.clock.advance(86401)
        self.assertEqual(self.attempt().action, FilterAction.TEMPFAIL)

    def test_retryWindowExpires(self) -> None:
        """
        A retry later than the retry window counts as a new first attempt.
        """
        self.attempt()
        self.clock.advance(3601)
        self.assertEqual(self.attempt().action, FilterAction.TEMPFAIL)

    def test_sameNetworkRetry(self) -> None:
        """
        A retry from another host of the same /24 (a sender's pool) passes.
        """
        self.attempt(peer="192.0.2.10")
        self.clock.advance(300)
        self.assertEqual(self.attempt(peer="192.0.2.200").action, FilterAction.ACCEPT)

    def test_tripletParts(self) -> None:
        """
        Another sender, recipient or network is a new triplet.
        """
        self.attempt()
        self.clock.advance(300)
        self.assertEqual(self.attempt(sender="carol@remote.test").action, FilterAction.TEMPFAIL)
        self.assertEqual(self.attempt(rcpt=Address.fromString("bob@example.test")).action, FilterAction.TEMPFAIL)
        self.assertEqual(self.attempt(peer="198.51.100.1").action, FilterAction.TEMPFAIL)

    def test_nullSender(self) -> None:
        """
        Bounces (null sender) are greylisted like any other triplet.
        """
        self.assertEqual(self.attempt(sender="").action, FilterAction.TEMPFAIL)
        self.clock.advance(300)
        self.assertEqual(self.attempt(sender="").action, FilterAction.ACCEPT)

    def test_autoWhitelist(self) -> None:
        """
        After C{autoWhitelist} successful retries, the client network skips
        greylisting for new triplets.
        """
        for sender in ("a@remote.test", "b@remote.test"):
            self.attempt(sender=sender)
            self.clock.advance(300)
            self.assertEqual(self.attempt(sender=sender).action, FilterAction.ACCEPT)
        self.assertEqual(self.attempt(sender="new@remote.test").action, FilterAction.ACCEPT)
        self.assertEqual(self.attempt(peer="198.51.100.1", sender="new@remote.test").action, FilterAction.TEMPFAIL)

    def test_authenticatedSkip(self) -> None:
        """
        Authenticated sessions and submission endpoints are never
        greylisted.
        """
        self.assertEqual(self.attempt(authenticatedAs="alice@example.test").action, FilterAction.ACCEPT)
        self.assertEqual(self.attempt(endpoint=SUBMISSION).action, FilterAction.ACCEPT)
        self.assertEqual(self.greylist.triplets, {})

    def test_whitelistNetwork(self) -> None:
        """
        Clients in a configured whitelist network are never greylisted.
        """
        self.greylist.whitelist = [ipaddress.ip_network("192.0.2.0/25")]
        self.assertEqual(self.attempt(peer="192.0.2.10").action, FilterAction.ACCEPT)
        self.assertEqual(self.attempt(peer="192.0.2.130").action, FilterAction.TEMPFAIL)

    def test_persisted(self) -> None:
        """
        The state is written a moment after a change and read back by a new
        instance (a restart): a retry after the restart passes.
        """
        self.attempt()
        self.assertFalse(self.path.exists())
        self.clock.advance(SAVE_DELAY)
        self.assertTrue(self.path.exists())
        self.assertEqual(json.loads(self.path.read_text())["version"], 1)
        restarted = GreylistFilter(Greylist(self.clock, self.path, delay=300, retryWindow=3600, expiry=86400))
        self.clock.advance(300)
        self.filter = restarted
        self.assertEqual(self.attempt().action, FilterAction.ACCEPT)

    def test_prunedOnSave(self) -> None:
        """
        Expired triplets are not written back.
        """
        self.attempt(sender="old@remote.test")
        self.clock.advance(3601)
        self.attempt(sender="new@remote.test")
        self.greylist.save()
        keys = list(json.loads(self.path.read_text())["triplets"])
        self.assertEqual(len(keys), 1)
        self.assertIn("new@remote.test", keys[0])

    def test_corruptState(self) -> None:
        """
        An unreadable state file is logged and replaced, not fatal.
        """
        self.path.write_text("{not json")
        greylist = Greylist(self.clock, self.path)
        self.assertEqual(greylist.triplets, {})
        greylist.check("192.0.2.1", "a@b.test", "c@d.test")
        self.clock.advance(SAVE_DELAY)
        self.assertEqual(len(json.loads(self.path.read_text())["triplets"]), 1)
