# -*- test-case-name: tests.protocols.test_smtp_server -*-
"""
SMTP replies: code, enhanced status code (RFC 3463) and text.

Texts follow Postfix where it has one, so that administrators recognise them
in their clients' bounce messages.
"""

from __future__ import annotations

from typing import NamedTuple

from mailsrv.errors import ErrorKind, MailError


class Reply(NamedTuple):
    code: int
    status: str  # enhanced status code, "" for replies that have none (220/221 greeting)
    text: str

    def format(self, *args: object) -> "Reply":
        return Reply(self.code, self.status, self.text.format(*args))


OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Ok")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {}")
CHUNK_OK = Reply(250, "2.0.0", "Ok: {} octets")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
BYE = Reply(221, "2.0.0", "Bye")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
VRFY = Reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT STARTTLS AUTH")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")

NEED_HELO = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NOT_RECOGNIZED = Reply(502, "5.5.2", "Error: command not recognized")
LINE_TOO_LONG = Reply(500, "5.5.2", "Error: line too long")
SYNTAX_MAIL = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
SYNTAX_RCPT = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
BAD_ADDRESS = Reply(501, "5.1.7", "Bad address syntax")
BAD_RECIPIENT_ADDRESS = Reply(501, "5.1.3", "Bad recipient address syntax")
SYNTAX_HELO = Reply(501, "5.5.4", "Syntax: {} hostname")
SYNTAX_BDAT = Reply(501, "5.5.4", "Syntax: BDAT count [LAST]")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT in the same transaction")
NO_PARAMS = Reply(501, "5.5.4", "Syntax error: no parameters allowed")
BAD_PARAM = Reply(555, "5.5.4", "Unsupported option: {}")
NON_ASCII = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
BARE_NEWLINE = Reply(550, "5.5.2", "Error: bare <CR> or <LF> received; message not accepted")
NEED_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
NEED_AUTH = Reply(530, "5.7.0", "Authentication required")
TLS_UNAVAILABLE = Reply(502, "5.5.1", "Error: command not implemented")
TLS_ACTIVE = Reply(554, "5.5.1", "Error: TLS already active")
AUTH_DISABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
AUTH_ALREADY = Reply(503, "5.5.1", "Error: already authenticated")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_FAILED = Reply(535, "5.7.8", "Error: authentication failed")
AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication aborted")
AUTH_DECODE = Reply(501, "5.5.2", "Cannot decode response")
AUTH_TEMP = Reply(454, "4.7.0", "Temporary authentication failure")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "{} Error: too many errors")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "{} Error: too many connections from {}")
TIMEOUT = Reply(421, "4.4.2", "{} Error: timeout exceeded")
REFUSED = Reply(503, "5.7.0", "Error: access denied")
LOCAL_ERROR = Reply(451, "4.3.0", "Error: queue file write error")

_KIND_REPLIES: dict[tuple[ErrorKind, bool], tuple[int, str]] = {
    (ErrorKind.NOT_FOUND, False): (550, "5.1.1"),
    (ErrorKind.NO_QUOTA, False): (552, "5.2.2"),
    (ErrorKind.NO_QUOTA, True): (452, "4.2.2"),
    (ErrorKind.TOO_BIG, False): (552, "5.3.4"),
    (ErrorKind.TOO_MANY, True): (452, "4.5.3"),
    (ErrorKind.POLICY, False): (554, "5.7.1"),
    (ErrorKind.REJECTED, False): (550, "5.7.1"),
    (ErrorKind.REJECTED, True): (450, "4.7.1"),
    (ErrorKind.RATE_LIMITED, True): (452, "4.7.1"),
    (ErrorKind.POLICY, True): (450, "4.7.1"),
    (ErrorKind.SYNTAX, False): (501, "5.5.4"),
    (ErrorKind.TEMP, True): (451, "4.3.0"),
    (ErrorKind.PERM, False): (550, "5.0.0"),
    (ErrorKind.LOOP, False): (554, "5.4.6"),
    (ErrorKind.SENDER, False): (553, "5.7.1"),
}


def replyForError(error: MailError, subject: str = "") -> Reply:
    """
    Map a L{MailError} to an SMTP reply; C{subject} (e.g. C{<rcpt>}) is
    prefixed to the text as Postfix does.
    """
    code, status = _KIND_REPLIES.get(
        (error.kind, error.temporary), (451, "4.3.0") if error.temporary else (550, "5.0.0")
    )
    text = f"{subject}: {error.message}" if subject else error.message
    return Reply(code, status, text)
