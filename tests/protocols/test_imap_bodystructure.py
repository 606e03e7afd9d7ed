"""
BODYSTRUCTURE from the MIME structure (L{mailsrv.protocols.imap.bodystructure}):
the same answer as Twisted's C{getBodyStructure} (what mailsrv sent before)
on the corpus wherever that one was right (except that sub-part sizes now
count CRLF line ends, as BODY[n] sends them), the documented fixes where it was
not, the same answer whether the structure comes from the Maildir index or
from the file, and the index keeps it (C{mailsrv-cache}) so that a second
process answers without opening the message.
"""

from __future__ import annotations

import email.message
import email.parser
import io
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from twisted.mail.imap4 import collapseNestedLists, getBodyStructure

from mailsrv.interfaces import MessageInfo
from mailsrv.mime import MimePart, parseStructure
from mailsrv.protocols.imap.bodystructure import _Literal, bodyStructure
from mailsrv.protocols.imap.fetch import _StructureView
from mailsrv.protocols.imap.message import IMAPMessage, headersDict
from mailsrv.storage.maildir import MaildirStore
from mailsrv.testing.mimecorpus import corpus
from tests.storage.helpers import successResultOf, synchronousRunner

CORPUS = dict(corpus())

#: Corpus messages where Twisted's answer was wrong, and why (the new
#: answers for them are checked one by one below).
TWISTED_WRONG = {
    "rfc2231-and-quoted-params": "split parameters at ';' inside quotes, no RFC 2231",
    "digest": "digest parts defaulted to text/plain",
    "message-rfc822-top": "line count of the inner body, not of the encapsulated message",
    "mime-forwarded-rfc822": "line count of the inner body, not of the encapsulated message",
    "eight-bit-param": "raised UnicodeEncodeError on the 8-bit value",
    "emailmessage-alternative-attachments": "raised UnicodeEncodeError on an 8-bit text part",
}


class _Folder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def openMessage(self, uid: int) -> Any:
        return io.BytesIO(self.data)


def message(data: bytes) -> IMAPMessage:
    return IMAPMessage(_Folder(data), MessageInfo(1, "k", len(data), frozenset(), 0.0))  # type: ignore[arg-type]


class _StdlibPart:
    """
    How mailsrv used to present sub-parts to Twisted's C{getBodyStructure}:
    from the stdlib parser's tree of the whole message.
    """

    def __init__(self, part: email.message.Message) -> None:
        self._part = part

    def getHeaders(self, negate: bool, *names: Any) -> dict[str, str]:
        block = b"".join(
            n.encode("ascii", "surrogateescape") + b": " + v.encode("ascii", "surrogateescape") + b"\r\n"
            for n, v in self._part.raw_items()
        )
        return headersDict(block + b"\r\n", negate, names)

    def _body(self) -> bytes:
        if self._part.is_multipart():
            return self._part.as_bytes(policy=compat32.clone(linesep="\r\n"))
        payload = self._part.get_payload()
        return payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""

    def getBodyFile(self) -> Any:
        return io.BytesIO(self._body())

    def getSize(self) -> int:
        return len(self._body())

    def isMultipart(self) -> bool:
        return self._part.is_multipart()

    def getSubPart(self, part: int) -> "_StdlibPart":
        payload = self._part.get_payload()
        if not isinstance(payload, list):
            raise IndexError(part)
        return _StdlibPart(payload[part])


class _StdlibMessage(IMAPMessage):
    def getSubPart(self, part: int) -> Any:  # type: ignore[override]
        with self.open() as f:
            parsed = email.parser.BytesParser(policy=compat32).parse(f)
        return _StdlibPart(parsed).getSubPart(part)


def oldMessage(data: bytes) -> IMAPMessage:
    return _StdlibMessage(_Folder(data), MessageInfo(1, "k", len(data), frozenset(), 0.0))  # type: ignore[arg-type]


def _plain(node: Any) -> Any:
    if isinstance(node, list):
        return [_plain(n) for n in node]
    if isinstance(node, _Literal):
        return node.read().decode("utf-8")
    return node


def normalise(node: list[Any]) -> list[Any]:
    """
    A non-extended BODY with what Twisted did differently but not wrongly
    smoothed out: parameter order and the case of their values, NIL for a
    missing Content-Transfer-Encoding.
    """
    if node and isinstance(node[0], list):
        count = next(i for i, n in enumerate(node) if not isinstance(n, list))
        return [normalise(n) for n in node[:count]] + [node[count].lower()]
    main, sub, params, cid, desc, cte, size = node[:7]
    pairs = sorted(zip(params[::2], (v.lower() for v in params[1::2]))) if params else None
    result = [main.lower(), sub.lower(), pairs, cid, desc, (cte or "7BIT").upper(), size]
    rest = node[7:]
    if (main.lower(), sub.lower()) == ("message", "rfc822"):
        result.extend([rest[0], normalise(rest[1])])
    elif main.lower() == "text":
        result.append(rest[0])
    return result


def lfSizes(node: list[Any], part: MimePart, data: bytes) -> None:
    """
    Replace the sizes in C{node} (a BODY of C{part}) by those of the bodies
    with LF line ends: Twisted's parts came from the stdlib parser reading
    the message with universal newlines, so it counted (and sent) LF.
    """
    if node and isinstance(node[0], list):
        for child, childPart in zip(node, part.children):
            lfSizes(child, childPart, data)
        return
    body = data[part.bodyOffset : part.bodyOffset + part.bodySize]
    node[6] = len(body.replace(b"\r\n", b"\n"))
    if part.isMessage() and part.children:
        lfSizes(node[8], part.children[0], data)


@pytest.mark.parametrize("name", sorted(set(CORPUS) - set(TWISTED_WRONG)))
def test_sameAsTwisted(name: str) -> None:
    """
    Apart from the sizes of sub-parts (CRLF now, LF before: see
    L{lfSizes}), the answer is what Twisted's gave.
    """
    data = CORPUS[name]
    old = getBodyStructure(_StructureView(oldMessage(data)), False)
    root = parseStructure(io.BytesIO(data))
    new = _plain(bodyStructure(root, False))
    if root.children:
        lfSizes(new, root, data)
    assert normalise(new) == normalise(old)


def structure(data: bytes, extended: bool = True) -> bytes:
    return collapseNestedLists([bodyStructure(parseStructure(io.BytesIO(data)), extended)])


def test_parametersAndExtensions() -> None:
    """
    Quoted parameters keep their semicolons and case, RFC 2231
    continuations are joined (encoded ones stay encoded, named C{name*}),
    dispositions are unquoted, languages are a list, locations reported.
    """
    out = structure(CORPUS["rfc2231-and-quoted-params"])
    assert out.startswith(b'(("application" "octet-stream" ("name" "very long file name in two parts.bin")')
    assert b'("attachment" ("filename*" "utf-8\'\'%C3%A9t%C3%A9.txt"))' in out
    assert b'("charset" "us-ascii" "format" "flowed" "delsp" "yes")' in out
    assert b'("attachment" ("filename" "a \\"quoted\\" name; with semicolon.txt")) ("en" "de")' in out
    assert out.endswith(b' "mixed" ("boundary" "semi;colon boundary") NIL NIL NIL)')
    related = structure(CORPUS["lf-in-crlf-and-headerless-preamble"])
    assert b'"http://example.test/x.gif")' in related
    assert b'("boundary" "=_rel" "type" "text/html")' in related


def test_digestAndMessage() -> None:
    """
    A digest part without Content-Type is a message/rfc822 with ENVELOPE and
    its own structure; a message/rfc822 part counts the lines of the whole
    encapsulated message.
    """
    out = structure(CORPUS["digest"], extended=False)
    assert out.startswith(b'(("message" "rfc822" NIL NIL NIL "7BIT" ')
    assert b'"first in digest"' in out and b'("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 9 1) 4)' in out
    data = CORPUS["message-rfc822-top"]
    root = parseStructure(io.BytesIO(data))
    out = structure(data)
    inner = data[root.bodyOffset :]
    assert out.endswith(b" %d NIL NIL NIL NIL)" % (inner.count(b"\n"),))
    assert b'"Inside"' in out


def test_eightBitParameterIsLiteral() -> None:
    out = structure(CORPUS["eight-bit-param"])
    assert b'("name" {9}\r\ncaf\xc3\xa9.txt)' in out


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    return MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="mx.example")


def test_indexKeepsStructure(store: MaildirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The Maildir index parses multipart messages when it first summarises
    them, keeps the structure in C{mailsrv-cache}, and a new store (another
    process) gives the same BODYSTRUCTURE without opening the message.
    """
    account = "alice@example.test"
    folder = store.openFolder(account)
    names = sorted(CORPUS)
    for name in names:
        successResultOf(folder.append(CORPUS[name]))
    folder.refresh()
    uids = [m.uid for m in folder.messages()]
    summaries = successResultOf(folder.summaries(uids, structure=True))
    expected = {}
    for uid, name in zip(uids, names):
        fromIndex = message(CORPUS[name])
        fromIndex.summary = summaries[uid]
        expected[uid] = collapseNestedLists([bodyStructure(fromIndex.mimeStructure(), True)])
        assert expected[uid] == structure(CORPUS[name]), name

    again = MaildirStore(store.root, runInThread=synchronousRunner, hostname="mx.example").openFolder(account)
    opened: list[str] = []
    real = open

    def recording(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", recording)
    cached = successResultOf(again.summaries(uids, structure=True))
    for uid in uids:
        msg = IMAPMessage(again, again.messages()[uids.index(uid)])
        msg.summary = cached[uid]
        assert collapseNestedLists([bodyStructure(msg.mimeStructure(), True)]) == expected[uid]
    assert not [p for p in opened if "/cur/" in p or "/new/" in p]


def test_largeMessageStructureInThread(store: MaildirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A multipart message over the size the index parses up front gets its
    structure when BODYSTRUCTURE asks (C{structure=True}), and keeps it.
    """
    from mailsrv.storage import index as indexModule

    monkeypatch.setattr(indexModule, "MAX_LINE_COUNT_SIZE", 100)
    account = "alice@example.test"
    folder = store.openFolder(account)
    data = CORPUS["nested-multipart"]
    successResultOf(folder.append(data))
    successResultOf(folder.append(data))
    folder.refresh()
    first, uid = [m.uid for m in folder.messages()]
    # Summarised and completed in one call.
    assert successResultOf(folder.summaries([first], structure=True))[first].structure is not None
    plain = successResultOf(folder.summaries([uid]))[uid]
    assert plain.structure is None and plain.bodyLines is None
    full = successResultOf(folder.summaries([uid], structure=True))[uid]
    assert full.structure == parseStructure(io.BytesIO(data))
    assert successResultOf(folder.summaries([uid]))[uid].structure == full.structure


def _leaves(part: email.message.Message, path: tuple[int, ...]) -> Any:
    if part.is_multipart():
        children = part.get_payload()
        if part.get_content_type() == "message/rfc822":
            inner = children[0]
            if inner.is_multipart():
                for i, child in enumerate(inner.get_payload()):
                    yield from _leaves(child, path + (i,))
            else:
                yield path + (0,), inner
            return
        for i, child in enumerate(children):
            yield from _leaves(child, path + (i,))
    elif path:
        yield path, part


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_subPartsByOffset(name: str) -> None:
    """
    C{BODY[n.m]} walks the structure as FETCH does and reads the part's
    body from the file: the exact bytes the email package finds there (CRLF
    kept; the stdlib-based parts sent LF).
    """
    data = CORPUS[name]
    parsed = email.message_from_bytes(data, policy=compat32)
    if not parsed.get_content_type().startswith("multipart/"):
        return  # BODY[1] of a single-part message is its body, a case of its own
    for path, expected in _leaves(parsed, ()):
        target: Any = message(data)
        for p in path:
            assert target.isMultipart(), (name, path)
            target = target.getSubPart(p)
        with target.getBodyFile() as f:
            assert f.read() == expected._payload.encode("ascii", "surrogateescape"), (name, path)  # type: ignore[attr-defined]
        header = target.rawHeader()
        assert header == b"" or header.endswith(b"\n"), (name, path)
