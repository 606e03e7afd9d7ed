"""
A corpus of varied MIME messages (CRLF lines) for the tests of
L{mailsrv.mime} and IMAP BODYSTRUCTURE: nested multiparts, message/rfc822,
digests, RFC 2231 and quoted parameters, preambles and epilogues, missing
final boundaries, boundary look-alikes, long lines, 8-bit values.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _built() -> list[tuple[str, bytes]]:
    """
    Messages made by the stdlib's own generator.
    """
    result = []
    m = EmailMessage()
    m["From"] = "Alice <alice@example.test>"
    m["To"] = "bob@example.test"
    m["Subject"] = "Report"
    m.set_content("Hello Bob,\n\nthe report is attached.\n")
    m.add_alternative("<p>Hello Bob,</p><p>the report is attached.</p>\n", subtype="html")
    m.add_attachment(b"%PDF-1.4 fake\n" * 200, maintype="application", subtype="pdf", filename="Report Q3.pdf")
    m.add_attachment("Grüße aus Köln\n", filename="grüße.txt")
    result.append(("emailmessage-alternative-attachments", m.as_bytes(policy=SMTP)))

    outer = MIMEMultipart("mixed")
    outer["Subject"] = "Forwarded"
    outer.attach(MIMEText("See below.\n"))
    inner = EmailMessage()
    inner["From"] = "Carol <carol@example.test>"
    inner["Subject"] = "Original"
    inner["Message-ID"] = "<orig@example.test>"
    inner.set_content("The original text.\n")
    inner.add_attachment(b"\x00\x01\x02" * 100, maintype="application", subtype="octet-stream", filename="data.bin")
    wrapper = EmailMessage()
    wrapper.set_content(inner)
    wrapper["Content-Disposition"] = "inline"
    outer.attach(wrapper)
    outer.attach(MIMEApplication(b"x" * 5000, Name="big.dat"))
    result.append(("mime-forwarded-rfc822", outer.as_bytes(policy=SMTP)))
    return result


_HANDWRITTEN = {
    "single-text": """\
From: a@example.test
Subject: plain

one
two
""",
    "no-content-type-no-final-newline": """\
Subject: bare

last line without break""",
    "nested-multipart": """\
From: a@example.test
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

plain =C3=A9
--inner
Content-Type: text/html; charset="utf-8"

<p>html</p>

--inner--
inner epilogue
--outer
Content-Type: image/png; name="pic.png"
Content-Transfer-Encoding: base64
Content-ID: <pic@example.test>
Content-Description: A picture
Content-Disposition: inline; filename="pic.png"

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA
60e6kgAAAABJRU5ErkJggg==
--outer--
The epilogue.
""",
    "missing-final-boundary": """\
Content-Type: multipart/mixed; boundary=b1

--b1
Content-Type: text/plain

first
--b1
Content-Type: text/plain

second, and the message just ends
""",
    "inner-missing-final-boundary": """\
Content-Type: multipart/mixed; boundary=A

--A
Content-Type: multipart/alternative; boundary=B

--B

inner one
--A
Content-Type: text/plain

after the inner multipart lost its end
--A--
""",
    "rfc2231-and-quoted-params": """\
Content-Type: multipart/mixed; boundary="semi;colon boundary"

--semi;colon boundary
Content-Type: application/octet-stream;
 name*0="very long file name ";
 name*1="in two parts.bin"
Content-Disposition: attachment;
 filename*=utf-8''%C3%A9t%C3%A9.txt

data
--semi;colon boundary
Content-Type: text/plain; charset="us-ascii"; format=flowed; delsp=yes
Content-Disposition: attachment; filename="a \\"quoted\\" name; with semicolon.txt"
Content-Language: en, de

text
--semi;colon boundary--
""",
    "digest": """\
Content-Type: multipart/digest; boundary=dig

--dig

From: one@example.test
Subject: first in digest

Body one.
--dig
Content-Type: text/plain

Not a message.
--dig--
""",
    "boundary-lookalikes": """\
Content-Type: multipart/mixed; boundary=bb

--bb
Content-Type: text/plain

--bbx is not a delimiter
 --bb neither
--bb-- trailing text makes this not a close either
--bb\t \t
Content-Type: text/plain

after a delimiter with trailing whitespace

--bb--
""",
    "message-rfc822-top": """\
Content-Type: message/rfc822

From: inner@example.test
To: x@example.test
Subject: Inside
Content-Type: multipart/mixed; boundary=in

--in
Content-Type: text/plain

inner text
--in--
""",
    "empty-parts": """\
Content-Type: multipart/mixed; boundary=e

--e
--e

--e
Content-Type: text/plain

--e--
""",
    "lf-in-crlf-and-headerless-preamble": """\
Content-Type: multipart/related; boundary="=_rel"; type="text/html"

--=_rel
Content-Type: text/html

<img src="cid:x">
--=_rel
Content-Type: image/gif
Content-Location: http://example.test/x.gif

GIF89a
--=_rel--
""",
}


def corpus() -> list[tuple[str, bytes]]:
    """
    C{(name, message bytes)} pairs.
    """
    result = [(name, _crlf(text)) for name, text in _HANDWRITTEN.items()]
    result.extend(_built())
    longLine = b"y" * 200_000
    result.append(
        (
            "long-line",
            b"Content-Type: multipart/mixed; boundary=L\r\n\r\n--L\r\nContent-Type: text/plain\r\n\r\n"
            + longLine
            + b"\r\nshort\r\n--L\r\nContent-Type: application/x-raw\r\n\r\n"
            + longLine
            + b"\r\n--L--\r\n",
        )
    )
    result.append(
        (
            "eight-bit-param",
            b"Content-Type: multipart/mixed; boundary=E\r\n\r\n--E\r\n"
            b'Content-Type: text/plain; name="caf\xc3\xa9.txt"\r\n\r\nx\r\n--E--\r\n',
        )
    )
    return result
