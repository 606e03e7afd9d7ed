"""
ManageSieve over real loopback sockets with real TLS, against a running
mailsrv: a client written on Python's socket and ssl modules, and
sieve-connect (Debian package sieve-connect) driven non-interactively.

The full loop: a script uploaded and activated over ManageSieve is
home/sieve/<name>.sieve in the account's Maildir directory, and
home/.dovecot.sieve links to it, which is where delivery reads it: mail
received on the MX port is then filed by it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import smtplib
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from mailsrv.config.load import loadConfig
from mailsrv.ops.doctor import Status, probeEndpoint
from mailsrv.testing.server import RunningServer, freePorts
from tests.integration.clients import Line, token, waitFor
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"
SCRIPT = b'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n  fileinto "Lists";\r\n}\r\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    starttls, implicit = freePorts(2)
    srv = RunningServer(
        tmp_path_factory.mktemp("managesieve"),
        endpoints=("smtp",),
        extraConfig=(
            "[managesieve]\nmax_scripts = 5\n\n[sieve]\nmax_script_size = 4096\n\n"
            f'[endpoints.managesieve]\nprotocol = "managesieve"\nlisten = ["127.0.0.1:{starttls}"]\n'
            'tls = "starttls-required"\n\n'
            f'[endpoints.sieves]\nprotocol = "managesieve"\nlisten = ["127.0.0.1:{implicit}"]\n'
            'tls = "implicit"\n\n'
        ),
    )
    srv.ports["managesieve"] = starttls
    srv.ports["sieves"] = implicit
    for account in (ALICE, BOB, CAROL, DAVE):
        srv.addUser(account, PASSWORD)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Sieve(Line):
    """
    A ManageSieve client: responses are read up to their OK, NO or BYE
    line, with literals ({N}) read by their length.
    """

    def __init__(self, port: int, tls: bool = False) -> None:
        super().__init__(port, tls=tls)
        self.greeting = self.response()

    def readexactly(self, count: int) -> bytes:
        while len(self.buf) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:count], self.buf[count:]
        return data

    def response(self) -> list[bytes]:
        lines = []
        while True:
            line = self.readline().rstrip(b"\r\n")
            literal = re.search(rb"\{(\d+)\}$", line)
            if literal:
                # The literal, then the rest of its line.
                line += b"\r\n" + self.readexactly(int(literal.group(1)))
                line += self.readline().rstrip(b"\r\n")
            lines.append(line)
            if re.match(rb"(OK|NO|BYE)\b", line):
                return lines

    def command(self, data: bytes) -> list[bytes]:
        self.send(data + b"\r\n")
        return self.response()

    def authenticate(self, account: str = ALICE, password: str = PASSWORD) -> list[bytes]:
        response = base64.b64encode(f"\0{account}\0{password}".encode())
        return self.command(b'AUTHENTICATE "PLAIN" "' + response + b'"')

    def startTLS(self) -> None:
        assert self.command(b"STARTTLS") == [b'OK "Begin TLS negotiation now."']
        super().startTLS()
        self.greeting = self.response()


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n%s" % (len(data), data)


def home(server: RunningServer, account: str) -> Path:
    return server.maildir(account) / "home"


def test_fullLoopOverSTARTTLS(server: RunningServer) -> None:
    """
    Before STARTTLS the SASL capability is empty and AUTHENTICATE is
    refused; after it the capabilities come again with PLAIN and LOGIN.
    PUTSCRIPT and SETACTIVE then create home/sieve/<name>.sieve and the
    home/.dovecot.sieve link in alice's Maildir directory, and the session
    lists, reads and checks scripts.
    """
    client = Sieve(server.ports["managesieve"])
    assert b'"SASL" ""' in client.greeting and b'"STARTTLS"' in client.greeting
    assert client.greeting[-1] == b'OK "mail.example.test ManageSieve ready."'
    assert client.authenticate() == [
        b'NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."'
    ]
    client.startTLS()
    assert b'"SASL" "PLAIN LOGIN"' in client.greeting and b'"STARTTLS"' not in client.greeting
    assert client.greeting[-1] == b'OK "TLS negotiation successful."'
    assert client.authenticate() == [b'OK "Logged in."']

    assert client.command(b'PUTSCRIPT "lists" ' + literal(SCRIPT)) == [b'OK "Putscript completed."']
    assert client.command(b'SETACTIVE "lists"') == [b'OK "Script activated."']
    scripts = home(server, ALICE) / "sieve"
    assert (scripts / "lists.sieve").read_bytes() == SCRIPT
    active = home(server, ALICE) / ".dovecot.sieve"
    assert os.readlink(active) == "sieve/lists.sieve"
    assert active.read_bytes() == SCRIPT

    assert client.command(b"LISTSCRIPTS") == [b'"lists" ACTIVE', b'OK "Listscripts completed."']
    assert client.command(b'GETSCRIPT "lists"') == [
        b"{%d}\r\n%s" % (len(SCRIPT), SCRIPT),
        b'OK "Getscript completed."',
    ]
    assert client.command(b"CHECKSCRIPT " + literal(b'require "fileinto";\r\nfrob;\r\n')) == [
        b"NO \"line 2: unknown command 'frob'\""
    ]
    assert client.command(b'DELETESCRIPT "lists"') == [b'NO (ACTIVE) "Cannot delete the active script."']
    assert client.command(b"LOGOUT") == [b'OK "Logout completed."']
    client.close()
    waitFor(lambda: "Sieve script lists activated for alice@example.test" in server.log())
    assert "Sieve script lists stored for alice@example.test, %d octets" % len(SCRIPT) in server.log()


def test_deliveryRunsTheUploadedScript(server: RunningServer) -> None:
    """
    A script uploaded and activated over ManageSieve files the next
    message received on the MX port.
    """
    client = Sieve(server.ports["sieves"], tls=True)
    assert client.authenticate(DAVE) == [b'OK "Logged in."']
    script = (
        b'require ["fileinto", "mailbox"];\r\n'
        b'if header :contains "subject" "[list]" {\r\n  fileinto :create "Lists";\r\n}\r\n'
    )
    assert client.command(b'PUTSCRIPT "lists" ' + literal(script)) == [b'OK "Putscript completed."']
    assert client.command(b'SETACTIVE "lists"') == [b'OK "Script activated."']
    client.close()
    subject = "[list] " + token("managesieve")
    smtp = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10)
    try:
        smtp.sendmail(
            "someone@remote.test",
            [DAVE],
            f"From: <someone@remote.test>\r\nTo: <{DAVE}>\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode(),
        )
    finally:
        smtp.quit()
    folder = server.maildir(DAVE) / ".Lists"

    def filed() -> bool:
        return any(
            subject.encode() in p.read_bytes() for sub in ("new", "cur") if (folder / sub).is_dir()
            for p in (folder / sub).iterdir()
        )

    waitFor(filed)
    inbox = [p for sub in ("new", "cur") for p in (server.maildir(DAVE) / sub).glob("*")]
    assert not any(subject.encode() in p.read_bytes() for p in inbox)


def test_pipelinedPlaintextDiscarded(server: RunningServer) -> None:
    """
    An AUTHENTICATE pipelined behind STARTTLS in the same plaintext packet
    is dropped: over TLS the session is not logged in.
    """
    client = Sieve(server.ports["managesieve"])
    response = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    client.send(b'STARTTLS\r\nAUTHENTICATE "PLAIN" "' + response + b'"\r\n')
    assert client.response() == [b'OK "Begin TLS negotiation now."']
    Line.startTLS(client)
    client.greeting = client.response()
    assert client.greeting[-1] == b'OK "TLS negotiation successful."'
    assert client.command(b"LISTSCRIPTS") == [b'NO "Authenticate first."']
    client.close()


def test_implicitTLS(server: RunningServer) -> None:
    """
    On the implicit-TLS endpoint login (here SASL LOGIN) works at once and
    STARTTLS is not offered.
    """
    client = Sieve(server.ports["sieves"], tls=True)
    assert b'"SASL" "PLAIN LOGIN"' in client.greeting and b'"STARTTLS"' not in client.greeting
    client.send(b'AUTHENTICATE "LOGIN"\r\n')
    assert client.readline() == b'"VXNlcm5hbWU6"\r\n'
    client.send(b'"' + base64.b64encode(BOB.encode()) + b'"\r\n')
    assert client.readline() == b'"UGFzc3dvcmQ6"\r\n'
    assert client.command(literal(base64.b64encode(PASSWORD.encode()))) == [b'OK "Logged in."']
    assert client.command(b"LISTSCRIPTS") == [b'OK "Listscripts completed."']
    client.close()


def test_scriptTooLargeOverTheWire(server: RunningServer) -> None:
    """
    A script over max_script_size, sent as a non-synchronizing literal, is
    read and thrown away and answered NO (QUOTA/MAXSIZE); the session goes
    on.
    """
    client = Sieve(server.ports["sieves"], tls=True)
    assert client.authenticate(BOB) == [b'OK "Logged in."']
    big = b"# filler\r\n" * 1000
    assert client.command(b'PUTSCRIPT "big" ' + literal(big)) == [
        b'NO (QUOTA/MAXSIZE) "Script is too large (max 4096 octets)."'
    ]
    assert client.command(b'NOOP "still-here"') == [b'OK (TAG "still-here") "Done."']
    assert not (home(server, BOB) / "sieve" / "big.sieve").exists()
    client.close()


def test_unmanagedActiveScriptKept(server: RunningServer) -> None:
    """
    A regular home/.dovecot.sieve (docker-mailserver copies one there) is
    listed as nothing active and kept as a script by SETACTIVE.
    """
    directory = home(server, CAROL)
    directory.mkdir(parents=True)
    (directory / ".dovecot.sieve").write_bytes(b"keep;\r\n")
    client = Sieve(server.ports["sieves"], tls=True)
    assert client.authenticate(CAROL) == [b'OK "Logged in."']
    assert client.command(b"LISTSCRIPTS") == [b'OK "Listscripts completed."']
    assert client.command(b'PUTSCRIPT "new" "discard;"') == [b'OK "Putscript completed."']
    [reply] = client.command(b'SETACTIVE "new"')
    kept = re.search(rb'kept as \\"(dovecot-sieve-[0-9-]+)\\"', reply)
    assert reply.startswith(b'OK "Script activated.') and kept, reply
    assert (directory / "sieve" / (kept.group(1).decode() + ".sieve")).read_bytes() == b"keep;\r\n"
    assert os.readlink(directory / ".dovecot.sieve") == "sieve/new.sieve"
    client.close()


def test_doctorProbesEndpoints(server: RunningServer) -> None:
    """
    `mailsrv doctor` reads the ManageSieve greeting and completes TLS on
    both kinds of endpoint.
    """
    config = loadConfig(server.configFile)
    for name in ("managesieve", "sieves"):
        policy = config.endpoint(name)
        check = probeEndpoint(policy, policy.listen[0], 5.0)
        assert check.status is Status.PASS, check
        assert "TLS" in check.detail, check


SIEVE_CONNECT = shutil.which("sieve-connect")


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect is not installed (Debian package sieve-connect)")
def test_sieveConnect(server: RunningServer, tmp_path: Path) -> None:
    """
    sieve-connect (STARTTLS, SASL, PUTSCRIPT with a literal, SETACTIVE,
    LISTSCRIPTS, GETSCRIPT, CHECKSCRIPT) driven by an --exec script: it
    exits 0, and the script is active in alice's Maildir directory.
    """
    assert SIEVE_CONNECT is not None
    filter = tmp_path / "vacation.sieve"
    filter.write_bytes(b'require "vacation";\nvacation :days 3 "I am away.";\n')
    commands = tmp_path / "commands"
    commands.write_text(
        f"upload {filter} away\n"
        "activate away\n"
        "list\n"
        "view away\n"
        f"checkscript {filter}\n"
    )
    result = run(
        [
            SIEVE_CONNECT, "--nosrv", "--server", "127.0.0.1", "--port", str(server.ports["managesieve"]),
            "--user", ALICE, "--passwordfd", "0", "--notlsverify", "--exec", str(commands),
        ],
        PASSWORD,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"away" ACTIVE' in result.stdout, result.stdout
    assert 'vacation :days 3 "I am away.";' in result.stdout, result.stdout
    assert (home(server, ALICE) / "sieve" / "away.sieve").read_bytes() == filter.read_bytes()
    assert os.readlink(home(server, ALICE) / ".dovecot.sieve") == "sieve/away.sieve"

    # Deactivate and delete through sieve-connect's one-shot actions.
    base = [
        SIEVE_CONNECT, "--nosrv", "--server", "127.0.0.1", "--port", str(server.ports["managesieve"]),
        "--user", ALICE, "--passwordfd", "0", "--notlsverify",
    ]
    assert run([*base, "--deactivate"], PASSWORD).returncode == 0
    assert not os.path.lexists(home(server, ALICE) / ".dovecot.sieve")
    assert run([*base, "--delete", "--remotesieve", "away"], PASSWORD).returncode == 0
    assert not (home(server, ALICE) / "sieve" / "away.sieve").exists()


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="sieve-connect is not installed (Debian package sieve-connect)")
def test_sieveConnectWrongPassword(server: RunningServer) -> None:
    """
    sieve-connect with a wrong password fails (non-zero exit).
    """
    assert SIEVE_CONNECT is not None
    result = run(
        [
            SIEVE_CONNECT, "--nosrv", "--server", "127.0.0.1", "--port", str(server.ports["managesieve"]),
            "--user", BOB, "--passwordfd", "0", "--notlsverify", "--list",
        ],
        "wrong",
    )
    assert result.returncode != 0
    assert "Authentication" in result.stderr, result.stderr


def run(argv: list[str], password: str, timeout: Optional[float] = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=password + "\n", capture_output=True, text=True, timeout=timeout, check=False)
