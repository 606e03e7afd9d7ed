"""
The IMAP extensions over real loopback sockets (implicit TLS), with two
real clients: the standard library's C{imaplib} and C{imapclient} (which
uses LITERAL+ by itself when it is advertised), plus concurrent sessions
with a delivery over SMTP while one of them IDLEs.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
from pathlib import Path
from typing import Iterator

import pytest

from mailsrv.testing.server import RunningServer
from tests.integration.clients import Line, clientContext, message, token

imapclient = pytest.importorskip("imapclient")

PASSWORD = "secret"
USERS = (
    "ann@example.test", "ben@example.test", "cat@example.test", "dan@example.test", "eve@example.test",
    "fay@example.test",
)
EXTENSIONS = {
    "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "ENABLE", "ID", "LITERAL+", "CHILDREN",
    "SPECIAL-USE", "CREATE-SPECIAL-USE", "QUOTA", "QUOTA=RES-STORAGE", "CONDSTORE",
}


@pytest.fixture(scope="module")
def imapServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = RunningServer(tmp_path_factory.mktemp("imapext"))
    for user in USERS:
        srv.addUser(user, PASSWORD)
    (srv.configDir / "dovecot-quotas.cf").write_text("eve@example.test:1k\n")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def stdlib(server: RunningServer, user: str) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=clientContext(), timeout=10)
    imap.login(user, PASSWORD)
    return imap


def client(server: RunningServer, user: str) -> "imapclient.IMAPClient":
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imaps"], ssl=True, ssl_context=clientContext(), timeout=10)
    c.login(user, PASSWORD)
    return c


def deliver(server: RunningServer, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], local_hostname="client.test", timeout=10) as s:
        assert s.sendmail("sender@remote.test", [to], message(subject, to=to)) == {}


def test_imaplibExtensions(imapServer: RunningServer) -> None:
    """
    imaplib: every advertised extension answers as its RFC says (APPENDUID,
    COPYUID, UID EXPUNGE, MOVE, UNSELECT, ENABLE, ID, GETQUOTAROOT,
    SUBSCRIBE/LSUB persisted, CREATE-SPECIAL-USE, special-use LIST).
    """
    imap = stdlib(imapServer, "ann@example.test")
    assert EXTENSIONS <= set(imap.capabilities)
    typ, data = imap.append("INBOX", "(\\Seen)", None, message(token("a")))
    assert typ == "OK" and re.match(rb"\[APPENDUID \d+ 1\]", data[0]), data
    imap.append("INBOX", None, None, message(token("b")))
    assert imap.select("INBOX")[1] == [b"2"]
    typ, data = imap.copy("1:2", "Archive")
    assert re.match(rb"\[COPYUID \d+ 1:2 1:2\]", data[0]), data
    typ, data = imap.uid("MOVE", "2", "Trash")
    assert typ == "OK"
    assert re.search(rb"\[COPYUID \d+ 2 1\]", b" ".join(imap.untagged_responses.get("OK", [])))
    imap.store("1", "+FLAGS", "(\\Deleted)")
    assert imap.uid("EXPUNGE", "1")[0] == "OK"
    assert imap.select("INBOX")[1] == [b"0"]
    assert imap.unselect()[0] == "OK"
    assert imap.enable("CONDSTORE")[0] == "OK"
    typ, data = imap.xatom("ID", '("name" "imaplib")')
    assert typ == "OK" and b'"mailsrv"' in imap.untagged_responses.pop("ID")[0]
    assert imap.getquotaroot("INBOX")[0] == "OK"
    assert imap.subscribe("Later")[0] == "OK"
    assert imap.xatom("CREATE", "Starred (USE (\\Flagged))")[0] == "OK"
    typ, listing = imap.list()
    assert b'(\\HasNoChildren \\Sent) "." "Sent"' in listing
    assert b'(\\HasNoChildren \\Flagged) "." "Starred"' in listing
    imap.logout()
    again = stdlib(imapServer, "ann@example.test")
    typ, subscribed = again.lsub()
    assert b'(\\Noselect) "." "Later"' in subscribed, subscribed
    again.logout()
    subsFile = imapServer.maildir("ann@example.test") / "subscriptions"
    assert subsFile.read_text().startswith("V\t2\n\n")


def test_imapclientExtensions(imapServer: RunningServer) -> None:
    """
    imapclient: APPEND (sent with LITERAL+), special-use discovery, MOVE,
    UID EXPUNGE, COPY, UNSELECT, ENABLE, ID, quota roots and subscriptions.
    """
    c = client(imapServer, "ben@example.test")
    caps = {cap.decode() for cap in c.capabilities()}
    assert EXTENSIONS <= caps
    assert c.find_special_folder(imapclient.imapclient.SENT) == "Sent"
    assert c.find_special_folder(imapclient.imapclient.JUNK) == "Junk"
    response = c.append("INBOX", message(token("c")), flags=[b"work"])
    assert b"[APPENDUID" in response
    c.append("INBOX", message(token("d")))
    c.select_folder("INBOX")
    c.copy([1], "Archive")
    c.move([2], "Trash")
    assert c.search() == [1]
    c.set_flags([1], [imapclient.DELETED])
    c.uid_expunge([1])
    assert c.search() == []
    c.unselect_folder()
    assert c.enable("CONDSTORE") == [b"CONDSTORE"]
    assert c.id_({"name": "imapclient"}) == ((b"name", b"mailsrv", b"vendor", b"mailsrv"),)
    roots, quotas = c.get_quota_root("INBOX")
    assert quotas == []
    c.create_folder("Projects")
    c.subscribe_folder("Projects")
    assert "Projects" in [name for _, _, name in c.list_sub_folders()]
    archive = c.select_folder("Archive")
    assert archive[b"EXISTS"] == 1
    assert b"work" in c.get_flags([1])[1]
    c.logout()


def test_literalPlusRaw(imapServer: RunningServer) -> None:
    """
    On the wire: a C{{n+}} APPEND gets no continuation request, and a
    C{{999999999+}} one is refused and the connection closed, without
    the server waiting for the bytes.
    """
    line = Line(imapServer.ports["imaps"], tls=True)
    line.readline()
    line.send(b"a LOGIN cat@example.test secret\r\n")
    assert line.readline().startswith(b"a OK")
    body = message(token("lit"))
    line.send(b"b APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\n")
    assert line.readline().startswith(b"b OK [APPENDUID")
    line.send(b"c APPEND INBOX {999999999+}\r\n")
    assert line.readline() == b"c BAD [TOOBIG] Literal too large\r\n"
    assert line.readline().startswith(b"* BYE")
    with pytest.raises(ConnectionError):
        line.readline(timeout=5)
    line.close()


def test_overQuota(imapServer: RunningServer) -> None:
    """
    eve has a 1k quota in dovecot-quotas.cf: GETQUOTA reports it and an
    APPEND past it is C{NO [OVERQUOTA]}.
    """
    c = client(imapServer, "eve@example.test")
    roots, quotas = c.get_quota_root("INBOX")
    assert [(q.resource, q.usage, q.limit) for q in quotas] == [("STORAGE", 0, 1)]
    c.append("INBOX", message("small"))
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="OVERQUOTA"):
        c.append("INBOX", message("big", body="x" * 2000 + "\r\n"))
    c.select_folder("INBOX")
    assert c.search() == [1]
    c.logout()


def test_concurrentSessions(imapServer: RunningServer) -> None:
    """
    Two sessions and SMTP: a delivery reaches the IDLEing session as EXISTS
    within a second, another session's flag change as FETCH, and its
    MOVE as EXPUNGE; the non-idle session hears about it all at NOOP.
    """
    user = "dan@example.test"
    idler = client(imapServer, user)
    other = client(imapServer, user)
    idler.select_folder("INBOX")
    idler.idle()
    deliver(imapServer, user, token("one"))
    started = time.monotonic()
    seen = idler.idle_check(timeout=5)
    assert (1, b"EXISTS") in seen, seen
    assert time.monotonic() - started < 1.5
    other.select_folder("INBOX")
    other.add_flags([1], [imapclient.FLAGGED])
    seen = idler.idle_check(timeout=5)
    assert any(item[1] == b"FETCH" and b"\\Flagged" in item[2][1] for item in seen if len(item) > 2), seen
    deliver(imapServer, user, token("two"))
    seen = idler.idle_check(timeout=5)
    assert (2, b"EXISTS") in seen, seen
    other.noop()
    other.move([1], "Archive")
    seen = idler.idle_check(timeout=5)
    assert (1, b"EXPUNGE") in seen, seen
    idler.idle_done()
    assert idler.search() == [2]  # UIDs: the first message moved away
    idler.logout()
    other.logout()


def test_updatesBeforeTaggedReply(imapServer: RunningServer) -> None:
    """
    imaplib on the Maildir store: a delivery over SMTP, another session's
    flag change and its EXPUNGE reach the first session before the tagged
    reply of its next UID FETCH, STATUS and LIST (not only at NOOP); after
    FETCH the EXPUNGE is held back, and sequence numbers stay right.
    """
    user = "fay@example.test"
    first = stdlib(imapServer, user)
    other = stdlib(imapServer, user)
    subjects = [token(f"update{i}") for i in range(3)]
    for subject in subjects:
        other.append("INBOX", None, None, message(subject))
    assert first.select("INBOX")[1] == [b"3"]
    first.response("EXISTS")  # imaplib keeps SELECT's EXISTS until read
    other.select("INBOX")

    deliver(imapServer, user, token("update-new"))
    typ, data = first.uid("FETCH", "1", "(FLAGS)")
    assert typ == "OK" and b"UID 1" in data[0], data
    assert first.response("EXISTS") == ("EXISTS", [b"4"])

    other.store("2", "+FLAGS", "(\\Flagged)")
    assert first.status("Archive", "(MESSAGES)")[0] == "OK"
    typ, fetches = first.response("FETCH")
    assert fetches == [b"2 (FLAGS (\\Flagged \\Recent))"], fetches

    other.store("1", "+FLAGS", "(\\Deleted)")
    other.expunge()
    typ, data = first.fetch("1:*", "(UID)")
    assert typ == "OK"
    assert first.response("EXPUNGE") == ("EXPUNGE", [None])
    assert first.list('""', "Archive")[0] == "OK"
    assert first.response("EXPUNGE") == ("EXPUNGE", [b"1"])
    typ, data = first.fetch("1", "(UID)")
    assert data == [b"1 (UID 2)"], data
    # Header searches answered from the index agree with sequence numbers
    # after the EXPUNGE.
    assert first.uid("SEARCH", "HEADER", "Subject", subjects[2].upper())[1] == [b"3"]
    assert first.search(None, "SUBJECT", subjects[1])[1] == [b"1"]
    assert first.search(None, "SUBJECT", subjects[0])[1] == [b""]
    first.logout()
    other.logout()


def test_parallelMovesDoNotDuplicate(imapServer: RunningServer, tmp_path: Path) -> None:
    """
    Two sessions MOVE the same 20 messages to different folders at once:
    every message ends up in exactly one folder.
    """
    import threading

    user = "ann@example.test"
    setup = client(imapServer, user)
    for folder in ("Left", "Right"):
        if not setup.folder_exists(folder):
            setup.create_folder(folder)
    for i in range(20):
        setup.append("INBOX", message(token(f"race{i}")))
    setup.logout()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2, timeout=20)

    def mover(target: str) -> None:
        try:
            c = client(imapServer, user)
            c.select_folder("INBOX")
            uids = c.search()
            barrier.wait()  # both hold the same 20 UIDs before either moves
            c.move(uids, target)
            c.logout()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=mover, args=(t,)) for t in ("Left", "Right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    check = client(imapServer, user)
    counts = {}
    for folder in ("INBOX", "Left", "Right"):
        counts[folder] = check.select_folder(folder, readonly=True)[b"EXISTS"]
    check.logout()
    assert counts["INBOX"] == 0 and counts["Left"] + counts["Right"] == 20, counts
