"""
DKIM: keys created by C{mailsrv dkim generate} in the OpenDKIM layout, and
the signer as the last pipeline modifier; every signature is checked with
dkimpy against the record the generator printed.
"""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import Any, Optional

import dkim
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailsrv.cli import EXIT_OK, EXIT_USER, main
from mailsrv.config.schema import DEFAULT_ENDPOINTS
from mailsrv.envelope import Address, Envelope, Session
from mailsrv.errors import MailError
from mailsrv.interfaces import IModifier
from mailsrv.pipeline.content import SpooledMessage
from mailsrv.pipeline.dkim import DKIMSigner, GeneratedKey, KeyStore, generateKey
from mailsrv.pipeline.pipeline import Pipeline
from mailsrv.pipeline.routing import Router
from mailsrv.pipeline.submission import SubmissionModifier, internalSession
from mailsrv.testing.fakes import RecordingTarget
from tests.test_pipeline import makeDirectory

ENDPOINTS = {e.name: e for e in DEFAULT_ENDPOINTS}

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: <bob@remote.test>\r\n"
    b"Subject: signed\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
    b".A line with a dot.\r\n"
)


def runNow(f: Any, *args: Any) -> "defer.Deferred[Any]":
    return defer.maybeDeferred(f, *args)


def dnsFor(records: dict[str, str]) -> Any:
    """
    A dkimpy C{dnsfunc} answering from C{records} ({name: TXT value}).
    """

    def lookup(name: bytes, timeout: int = 5) -> Optional[bytes]:
        value = records.get(name.decode("ascii").rstrip(".").lower())
        return None if value is None else value.encode("ascii")

    return lookup


def recordOf(key: GeneratedKey) -> dict[str, str]:
    return {f"{key.selector}._domainkey.{key.domain}": "".join(key.txtStrings())}


def submitted() -> Session:
    return Session(ENDPOINTS["submission"], "198.51.100.7", authenticatedAs="alice@example.test")


def spooled(data: bytes) -> SpooledMessage:
    message = SpooledMessage()
    message.write(data)
    message.finish()
    return message


def signed(edit: Any, data: bytes) -> bytes:
    message = spooled(data)
    message.apply(edit)
    return b"".join(message.chunks())


class GenerateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.config = self.root / "mailsrv.toml"
        self.root.mkdir()
        self.config.write_text(
            "[server]\n"
            'hostname = "mail.example.test"\n'
            'domains = ["example.test"]\n'
            f'data_dir = "{self.root / "data"}"\n'
            f'config_dir = "{self.root / "conf"}"\n'
        )

    def run_(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["--config", str(self.config), *argv], stdin=io.StringIO(), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    def test_generate_layout_and_record(self) -> None:
        """
        The private key is written 0600 where OpenDKIM and docker-mailserver
        keep it, beside a .txt record; the printed record names
        <selector>._domainkey.<domain> and its key is the key's public half.
        """
        code, out, err = self.run_("dkim", "generate", "Example.TEST")
        self.assertEqual(code, EXIT_OK, err)
        directory = self.root / "conf" / "opendkim" / "keys" / "example.test"
        private = directory / "mail.private"
        self.assertEqual(stat.S_IMODE(private.stat().st_mode), 0o600)
        self.assertIn(b"-----BEGIN RSA PRIVATE KEY-----", private.read_bytes())
        self.assertTrue(out.startswith("mail._domainkey.example.test.\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \""))
        self.assertTrue((directory / "mail.txt").read_text().startswith("mail._domainkey\tIN\tTXT"))
        self.assertIn(str(private), err)
        value = "".join(re.findall(r'"([^"]*)"', out))
        self.assertTrue(value.startswith("v=DKIM1; h=sha256; k=rsa; p=MIIBIjAN"))  # 2048-bit SPKI
        self.assertTrue(all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', out)))
        # The record verifies a signature made with the key.
        signature = dkim.sign(MESSAGE, b"mail", b"example.test", private.read_bytes())
        self.assertTrue(
            dkim.verify(signature + MESSAGE, dnsfunc=dnsFor({"mail._domainkey.example.test": value}))
        )

    def test_selector_and_refusals(self) -> None:
        """
        --selector names the file; an existing key is not replaced without
        --force; bad domains, selectors and sizes are refused.
        """
        self.assertEqual(self.run_("dkim", "generate", "example.test", "--selector", "s2024")[0], EXIT_OK)
        private = self.root / "conf" / "opendkim" / "keys" / "example.test" / "s2024.private"
        before = private.read_bytes()
        code, _, err = self.run_("dkim", "generate", "example.test", "--selector", "s2024")
        self.assertEqual(code, EXIT_USER)
        self.assertIn("--force", err)
        self.assertEqual(private.read_bytes(), before)
        self.assertEqual(self.run_("dkim", "generate", "example.test", "--selector", "s2024", "--force")[0], EXIT_OK)
        self.assertNotEqual(private.read_bytes(), before)
        self.assertEqual(stat.S_IMODE(private.stat().st_mode), 0o600)
        for argv in (
            ("../etc",),
            ("example.test/x",),
            ("nodots",),
            ("example.test", "--selector", "../x"),
            ("example.test", "--bits", "512"),
        ):
            code, _, err = self.run_("dkim", "generate", *argv)
            self.assertEqual(code, EXIT_USER, argv)
            self.assertTrue(err.startswith("mailsrv: "), err)
        self.assertFalse((self.root / "conf" / "opendkim" / "etc").exists())


class SignerTests(SynchronousTestCase):
    key: GeneratedKey
    configDir: Path

    @classmethod
    def setUpClass(cls) -> None:
        import tempfile

        cls.configDir = Path(tempfile.mkdtemp(prefix="dkimtest"))
        cls.key = generateKey(cls.configDir, "example.test", "mail")

    @classmethod
    def tearDownClass(cls) -> None:
        import shutil

        shutil.rmtree(cls.configDir, ignore_errors=True)

    def signer(self, enabled: bool = True, configDir: Optional[Path] = None) -> DKIMSigner:
        return DKIMSigner(KeyStore(configDir or self.configDir, "mail"), runNow, enabled=enabled)

    def test_interface(self) -> None:
        """
        The signer is a modifier.
        """
        self.assertTrue(verifyObject(IModifier, self.signer()))

    def test_signature_verifies_and_tampering_fails(self) -> None:
        """
        Submitted mail from a domain with a key gets one DKIM-Signature
        (rsa-sha256, d= the From: domain, the listed headers) that dkimpy
        verifies against the published record; a changed body or subject
        fails.
        """
        edit = self.successResultOf(self.signer().modify(submitted(), Envelope(), spooled(MESSAGE)))
        (field,) = edit.prepend
        self.assertTrue(field.startswith("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;"))
        tags = dkim.util.parse_tag_value(field.split(":", 1)[1].encode())
        self.assertEqual(tags[b"s"], b"mail")
        self.assertEqual(
            tags[b"h"].replace(b" ", b"").replace(b"\r\n", b"").replace(b"\t", b"").split(b":"),
            [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type", b"cc", b"reply-to", b"from"],
        )
        data = signed(edit, MESSAGE)
        self.assertTrue(data.startswith(b"DKIM-Signature: "))
        dns = dnsFor(recordOf(self.key))
        self.assertTrue(dkim.verify(data, dnsfunc=dns))
        self.assertFalse(dkim.verify(data.replace(b"Hello Bob.", b"Hello Eve."), dnsfunc=dns))
        self.assertFalse(dkim.verify(data.replace(b"Subject: signed", b"Subject: changed"), dnsfunc=dns))
        self.assertFalse(dkim.verify(data.replace(b"Subject: signed\r\n", b"Subject: signed\r\nCc: <x@evil.test>\r\n"), dnsfunc=dns))

    def test_not_signed(self) -> None:
        """
        Nothing is added for mail from the world, for a From: domain
        without a key (also in mail the server writes), or when disabled.
        """
        cases = [
            (self.signer(), Session(ENDPOINTS["smtp"], "198.51.100.7"), MESSAGE),
            (self.signer(), internalSession(), MESSAGE.replace(b"alice@example.test", b"x@remote.test")),
            (self.signer(), submitted(), MESSAGE.replace(b"alice@example.test", b"alice@other.test")),
            (self.signer(), submitted(), MESSAGE.replace(b"From: Alice <alice@example.test>\r\n", b"")),
            (self.signer(enabled=False), submitted(), MESSAGE),
        ]
        for signer, session, data in cases:
            edit = self.successResultOf(signer.modify(session, Envelope(), spooled(data)))
            self.assertEqual(edit.prepend, (), (session.endpoint.name, data[:40]))

    def test_server_generated_mail_signed(self) -> None:
        """
        Mail the server writes itself (a vacation reply from a user's
        address, a bounce from its hostname's domain) is signed when that
        domain has a key, as OpenDKIM signs it for docker-mailserver.
        """
        edit = self.successResultOf(self.signer().modify(internalSession(), Envelope(), spooled(MESSAGE)))
        (field,) = edit.prepend
        self.assertIn("d=example.test;", field)
        self.assertTrue(dkim.verify(signed(edit, MESSAGE), dnsfunc=dnsFor(recordOf(self.key))))

    def test_keytable_selector(self) -> None:
        """
        A key with another selector is found through OpenDKIM's KeyTable,
        as docker-mailserver writes it, and signs with that selector.
        """
        root = Path(self.mktemp())
        key = generateKey(root, "example.test", "dms2023")
        (root / "opendkim" / "KeyTable").write_text(
            "dms2023._domainkey.example.test example.test:dms2023:/tmp/docker-mailserver/opendkim/keys/example.test/dms2023.private\n"
        )
        edit = self.successResultOf(self.signer(configDir=root).modify(submitted(), Envelope(), spooled(MESSAGE)))
        self.assertIn("s=dms2023;", edit.prepend[0])
        self.assertTrue(dkim.verify(signed(edit, MESSAGE), dnsfunc=dnsFor(recordOf(key))))

    def test_broken_key_tempfails(self) -> None:
        """
        A key file that holds no key fails the message temporarily rather
        than sending it unsigned.
        """
        root = Path(self.mktemp())
        directory = root / "opendkim" / "keys" / "example.test"
        directory.mkdir(parents=True)
        (directory / "mail.private").write_text("-----BEGIN RSA PRIVATE KEY-----\nbroken\n-----END RSA PRIVATE KEY-----\n")
        failure = self.failureResultOf(self.signer(configDir=root).modify(submitted(), Envelope(), spooled(MESSAGE)), MailError)
        self.assertTrue(failure.value.temporary)

    def test_last_modifier_in_pipeline(self) -> None:
        """
        In a pipeline after the submission modifier, the signature covers
        the Message-ID and Date it adds, and survives the Received header
        put on top: the message as handed to the outbound target verifies.
        """
        root = Path(self.mktemp())
        root.mkdir()
        directory = makeDirectory(root)
        remote = RecordingTarget()
        pipeline = Pipeline(
            Router(directory),
            RecordingTarget(),
            "mail.example.test",
            remote=remote,
            modifiers=[SubmissionModifier(directory, "mail.example.test"), self.signer()],
        )
        delivery = pipeline.startDelivery(submitted(), Envelope(mailFrom=Address("alice", "example.test")))
        self.successResultOf(delivery.checkSender())
        self.successResultOf(delivery.addRecipient(Address("bob", "remote.test")))
        delivery.write(MESSAGE)
        self.successResultOf(delivery.commit())
        (message,) = remote.messages
        self.assertTrue(message.data.startswith(b"Received: "))
        self.assertIn(b"\r\nMessage-ID: <", message.data)
        self.assertTrue(dkim.verify(message.data, dnsfunc=dnsFor(recordOf(self.key))))
        self.assertFalse(
            dkim.verify(re.sub(rb"Message-ID: <[^>]*>", b"Message-ID: <other@x>", message.data), dnsfunc=dnsFor(recordOf(self.key)))
        )


class ConfigTests(SynchronousTestCase):
    def test_dkim_section(self) -> None:
        """
        [dkim] defaults to signing with selector "mail"; both keys are
        read, documented in the example, and a bad selector names its key.
        """
        from mailsrv.config.load import parseConfig
        from mailsrv.errors import ConfigError

        self.assertEqual((parseConfig({}, "t").dkim.enabled, parseConfig({}, "t").dkim.selector), (True, "mail"))
        config = parseConfig({"dkim": {"enabled": False, "selector": "s2024"}}, "t")
        self.assertEqual((config.dkim.enabled, config.dkim.selector), (False, "s2024"))
        with self.assertRaises(ConfigError) as caught:
            parseConfig({"dkim": {"selector": "../x"}}, "t")
        self.assertEqual(caught.exception.key, "dkim.selector")
        example = (Path(__file__).parents[1] / "etc" / "mailsrv.toml").read_text()
        section = example.split("\n[dkim]\n", 1)[1].split("\n[", 1)[0]
        self.assertIn("enabled = true", section)
        self.assertIn('selector = "mail"', section)
