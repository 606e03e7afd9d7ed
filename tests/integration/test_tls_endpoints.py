"""
The port and TLS policy over real sockets with real TLS and real clients:
smtplib, imaplib, poplib, openssl s_client and curl.
"""

from __future__ import annotations

import imaplib
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import Line, clientContext, maildirFiles, message, token
from tests.integration.conftest import PASSWORD

ALICE = "alice@example.test"
STARTTLS_ENDPOINTS = ("smtp", "submission", "pop3", "imap")
IMPLICIT_ENDPOINTS = ("submissions", "pop3s", "imaps")
ALL_ENDPOINTS = STARTTLS_ENDPOINTS + IMPLICIT_ENDPOINTS


def tlsSocket(server: RunningServer, endpoint: str, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """
    A TLS socket to C{endpoint}, doing the STARTTLS/STLS prelude first where
    the endpoint needs one.
    """
    port = server.ports[endpoint]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if endpoint in IMPLICIT_ENDPOINTS:
        return ctx.wrap_socket(sock)
    conn = Line.__new__(Line)
    conn.sock, conn.buf = sock, b""
    if endpoint in ("smtp", "submission"):
        conn.smtpReply()
        conn.send(b"EHLO c\r\n")
        conn.smtpReply()
        conn.send(b"STARTTLS\r\n")
        assert conn.smtpReply().startswith(b"220 ")
    elif endpoint == "imap":
        conn.readline()
        conn.send(b"a STARTTLS\r\n")
        assert conn.readline().startswith(b"a OK")
    else:
        conn.readline()
        conn.send(b"STLS\r\n")
        assert conn.readline().startswith(b"+OK")
    return ctx.wrap_socket(sock)


# -------------------------------------------------------------- TLS versions


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_tls_accepted(server: RunningServer, endpoint: str, version: ssl.TLSVersion) -> None:
    """
    TLS 1.2 and TLS 1.3 handshakes succeed on every endpoint, with a
    certificate and a forward-secret AEAD cipher.
    """
    s = tlsSocket(server, endpoint, clientContext(version, version))
    try:
        assert s.version() == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]
        assert s.getpeercert(binary_form=True)
        cipher = s.cipher()[0]
        assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    finally:
        s.close()


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_legacy_tls_refused(server: RunningServer, endpoint: str, version: ssl.TLSVersion) -> None:
    """
    TLS 1.0 and 1.1 (RFC 8996) handshakes fail on every endpoint.
    """
    try:
        ctx = clientContext(version, version, legacy=True)
    except (ValueError, ssl.SSLError) as e:  # pragma: no cover - depends on local OpenSSL
        pytest.skip(f"local OpenSSL cannot offer {version.name}: {e}")
    with pytest.raises(ssl.SSLError) as info:
        tlsSocket(server, endpoint, ctx).close()
    reason = str(info.value).upper()
    if "NO_PROTOCOLS_AVAILABLE" in reason:  # pragma: no cover - depends on local OpenSSL
        pytest.skip(f"local OpenSSL cannot offer {version.name}")
    # The server itself refused, with a protocol_version alert (RFC 8446 6.2).
    assert "ALERT_PROTOCOL_VERSION" in reason, reason


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(
    "endpoint,starttls",
    [("smtp", "smtp"), ("submission", "smtp"), ("imap", "imap"), ("pop3", "pop3"),
     ("submissions", None), ("imaps", None), ("pop3s", None)],
)
def test_openssl_s_client(server: RunningServer, endpoint: str, starttls: str) -> None:
    """
    openssl s_client negotiates TLS 1.2+ (implicit and STARTTLS) and refuses
    to get anything with -tls1_1.
    """
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.ports[endpoint]}", "-brief"]
    if starttls:
        args += ["-starttls", starttls]
    ok = subprocess.run(args, input=b"", capture_output=True, timeout=30)
    text = (ok.stdout + ok.stderr).decode(errors="replace")
    assert "Protocol version: TLSv1.3" in text, text
    old = subprocess.run(
        args + ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"], input=b"", capture_output=True, timeout=30
    )
    oldText = (old.stdout + old.stderr).decode(errors="replace")
    assert "Protocol version: TLSv1.1" not in oldText
    assert "alert protocol version" in oldText, oldText
    assert old.returncode != 0, oldText


# ------------------------------------------------------------ implicit TLS


@pytest.mark.parametrize("endpoint,greeting", [("submissions", b"220"), ("imaps", b"* OK"), ("pop3s", b"+OK")])
def test_implicit_tls_from_first_byte(server: RunningServer, endpoint: str, greeting: bytes) -> None:
    """
    Implicit endpoints say nothing in plaintext, and greet over TLS.
    """
    raw = socket.create_connection(("127.0.0.1", server.ports[endpoint]), timeout=3)
    raw.settimeout(1.5)
    try:
        early = raw.recv(100)
    except socket.timeout:
        early = b""
    raw.close()
    assert early == b""
    conn = Line(server.ports[endpoint], tls=True)
    assert conn.readline().startswith(greeting)
    conn.close()


@pytest.mark.parametrize("endpoint", ALL_ENDPOINTS)
def test_server_closes_after_quit_over_tls(server: RunningServer, endpoint: str) -> None:
    """
    After QUIT (LOGOUT) over TLS, implicit or after STARTTLS/STLS, the
    server sends its last reply, then the TLS close alert, and closes the
    connection: the client reads end-of-file at once instead of holding
    the connection until one side times out.
    """
    s = tlsSocket(server, endpoint, clientContext())
    s.settimeout(5)
    try:
        if endpoint in IMPLICIT_ENDPOINTS:
            s.recv(1000)
        quit = b"a LOGOUT\r\n" if endpoint.startswith("imap") else b"QUIT\r\n"
        s.sendall(quit)
        data = b""
        while True:
            chunk = s.recv(4096)  # socket.timeout here: the server kept the connection
            if not chunk:
                break
            data += chunk
        assert data.startswith((b"221 ", b"* BYE", b"+OK")), data
    finally:
        s.close()


# ---------------------------------------------------------------------- SMTP


def test_mx_plaintext_delivery_reaches_maildir_and_imap(server: RunningServer) -> None:
    """
    Port 25 takes a plaintext delivery for a local user; the message is in
    the Maildir when 250 arrives and can be read back over IMAP and POP3.
    """
    tok = token("mx")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        assert "starttls" in s.esmtp_features
        assert "auth" not in s.esmtp_features
        refused = s.sendmail("sender@remote.test", [ALICE], message(tok))
        assert refused == {}
    [path] = maildirFiles(server, ALICE, tok)
    stored = path.read_bytes()
    assert stored.startswith(
        b"Return-Path: <sender@remote.test>\r\nDelivered-To: alice@example.test\r\nReceived: from client.test"
    )
    assert b"by mail.example.test (mailsrv) with ESMTP id " in stored

    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
    imap.login(ALICE, PASSWORD)
    typ, data = imap.select("INBOX")
    assert typ == "OK"
    typ, data = imap.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    bodies = []
    for uid in uids:
        typ, fetched = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        bodies.append(fetched[0][1])
    imap.logout()
    assert stored in bodies

    pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=clientContext())
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    count, _ = pop.stat()
    retrieved = [b"\r\n".join(pop.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    pop.quit()
    assert stored in retrieved


def test_mx_refuses_relay(server: RunningServer) -> None:
    """
    Unauthenticated relaying is refused with 5xx, in plaintext and over TLS.
    """
    for tls in (False, True):
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
            if tls:
                s.starttls(context=clientContext())
            s.ehlo("client.test")
            assert s.mail("sender@remote.test")[0] == 250
            code, text = s.rcpt("victim@elsewhere.example")
            assert code == 554, text


def test_submission_requires_starttls(server: RunningServer) -> None:
    """
    587: no AUTH advertised before STARTTLS; AUTH and MAIL refused with 530;
    after STARTTLS, AUTH works and mail is delivered.
    """
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("client.test")
        assert "starttls" in s.esmtp_features
        assert "auth" not in s.esmtp_features
        code, text = s.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
        code, text = s.mail(ALICE)
        assert code == 530
        s.starttls(context=clientContext())
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"]
        assert "starttls" not in s.esmtp_features
        s.login("bob@example.test", PASSWORD)
        tok = token("sub")
        assert s.sendmail("bob@example.test", [ALICE], message(tok, sender="bob@example.test")) == {}
    [path] = maildirFiles(server, ALICE, tok)
    assert b"with ESMTPSA id" in path.read_bytes()


def test_submissions_implicit_auth(server: RunningServer) -> None:
    """
    465 speaks TLS at once, offers AUTH and no STARTTLS, and refuses MAIL
    without AUTH.
    """
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=clientContext(), timeout=10) as s:
        s.ehlo("client.test")
        assert "starttls" not in s.esmtp_features
        assert "LOGIN" in s.esmtp_features["auth"]
        assert s.mail(ALICE)[0] == 530
        s.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(ALICE, "wrong")
        s.login(ALICE, PASSWORD)
        tok = token("s465")
        assert s.sendmail(ALICE, ["bob@example.test"], message(tok, sender=ALICE, to="bob@example.test")) == {}
    assert len(maildirFiles(server, "bob@example.test", tok)) == 1


# ---------------------------------------------------------------------- IMAP


def test_imap_login_refused_before_starttls(server: RunningServer) -> None:
    """
    143: LOGINDISABLED and STARTTLS before TLS, LOGIN and AUTHENTICATE
    refused with PRIVACYREQUIRED; after STARTTLS LOGIN works.
    """
    conn = Line(server.ports["imap"])
    greeting = conn.readline()
    assert b"STARTTLS" in greeting and b"LOGINDISABLED" in greeting and b"AUTH=" not in greeting
    conn.send(f'a LOGIN "{ALICE}" "{PASSWORD}"\r\n'.encode())
    assert conn.readline().startswith(b"a NO [PRIVACYREQUIRED]")
    conn.send(b"b AUTHENTICATE PLAIN\r\n")
    line = conn.readline()
    assert line.startswith(b"b NO [PRIVACYREQUIRED]"), line
    conn.close()

    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
    imap.starttls(ssl_context=clientContext())
    assert "LOGINDISABLED" not in imap.capabilities
    assert imap.login(ALICE, PASSWORD)[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def test_imap_wrong_password_and_unknown_user_look_alike(server: RunningServer) -> None:
    """
    The client cannot tell a wrong password from an unknown account.
    """
    answers = []
    for user, password in ((ALICE, "wrong"), ("nobody@example.test", "wrong")):
        imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext())
        with pytest.raises(imaplib.IMAP4.error) as info:
            imap.login(user, password)
        answers.append(str(info.value))
        imap.logout()
    assert answers[0] == answers[1]
    assert "AUTHENTICATIONFAILED" in answers[0]


# ---------------------------------------------------------------------- POP3


def test_pop3_login_refused_before_stls(server: RunningServer) -> None:
    """
    110: CAPA shows STLS and no USER/SASL; USER/PASS and AUTH are refused;
    after STLS the login works.
    """
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    caps = pop.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto):
        pop.user(ALICE)
        pop.pass_(PASSWORD)
    with pytest.raises(poplib.error_proto):
        pop._shortcmd("AUTH PLAIN " + __import__("base64").b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
    pop.stls(context=clientContext())
    caps = pop.capa()
    assert "USER" in caps and "STLS" not in caps
    pop.user(ALICE)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    pop.stat()
    pop.quit()


# --------------------------------------------------------------------- curl


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_reads_and_sends(server: RunningServer) -> None:
    """
    curl lists the INBOX over IMAPS with login, over POP3 with STLS
    required, and sends over 465.
    """
    tok = token("curl")
    mail = server.root / f"{tok}.eml"
    mail.write_bytes(message(tok, sender=ALICE))
    sent = subprocess.run(
        ["curl", "-sS", "-k", f"smtps://127.0.0.1:{server.ports['submissions']}", "--user", f"{ALICE}:{PASSWORD}",
         "--mail-from", ALICE, "--mail-rcpt", ALICE, "--upload-file", str(mail)],
        capture_output=True, timeout=30,
    )
    assert sent.returncode == 0, sent.stderr
    assert len(maildirFiles(server, ALICE, tok)) == 1
    imap = subprocess.run(
        ["curl", "-sS", "-k", f"imaps://127.0.0.1:{server.ports['imaps']}/INBOX", "--user", f"{ALICE}:{PASSWORD}",
         "-X", "UID SEARCH ALL"],
        capture_output=True, timeout=30,
    )
    assert imap.returncode == 0, imap.stderr
    assert imap.stdout.startswith(b"* SEARCH"), imap.stdout
    pop = subprocess.run(
        ["curl", "-sS", "-k", "--ssl-reqd", f"pop3://127.0.0.1:{server.ports['pop3']}/", "--user",
         f"{ALICE}:{PASSWORD}"],
        capture_output=True, timeout=30,
    )
    assert pop.returncode == 0, pop.stderr
    assert pop.stdout.strip(), "no message list"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_submission_with_starttls(server: RunningServer) -> None:
    """
    swaks sends through 587 with STARTTLS and AUTH PLAIN.
    """
    tok = token("swaks")
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.ports["submission"]), "--tls",
         "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", PASSWORD,
         "--from", ALICE, "--to", "bob@example.test", "--header", f"Subject: {tok}"],
        capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout.decode(errors="replace")
    assert len(maildirFiles(server, "bob@example.test", tok)) == 1
