"""
Tests for L{mailsrv.storage.sieve_scripts}: where the active script is,
recompiling on change only, and scripts that cannot be used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from mailsrv.interfaces import ISieveScripts
from mailsrv.sieve import Keep, MessageContext, evaluate
from mailsrv.storage import sieve_scripts
from mailsrv.storage.maildir import MaildirStore
from mailsrv.storage.sieve_scripts import MaildirSieveScripts

from .helpers import successResultOf, synchronousRunner

ALICE = "alice@example.com"


def setUp(tmp_path: Path, **kwargs: Any) -> tuple[MaildirSieveScripts, Path]:
    store = MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="mx.example")
    home = tmp_path / "mail" / "example.com" / "alice" / "home"
    (home / "sieve").mkdir(parents=True)
    return MaildirSieveScripts(store, **kwargs), home


def activate(home: Path, name: str, text: str) -> None:
    (home / "sieve" / f"{name}.sieve").write_text(text)
    link = home / ".dovecot.sieve"
    if os.path.lexists(link):
        link.unlink()
    link.symlink_to(f"sieve/{name}.sieve")


def active(scripts: MaildirSieveScripts, account: str) -> Any:
    return successResultOf(scripts.activeScript(account))


def logged(events: list[dict[str, Any]]) -> list[str]:
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events]


def capture() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    return events


def test_interface(tmp_path: Path) -> None:
    scripts, _ = setUp(tmp_path)
    assert verifyObject(ISieveScripts, scripts)


def test_none_without_script(tmp_path: Path) -> None:
    scripts, home = setUp(tmp_path)
    assert not scripts.hasActiveScript(ALICE)
    assert active(scripts, ALICE) is None
    activate(home, "one", "keep;\n")
    assert scripts.hasActiveScript(ALICE)
    assert active(scripts, "nobody@example.com") is None
    assert active(scripts, "../../etc@example.com") is None


def test_symlinked_script_compiled_once(tmp_path: Path, monkeypatch: Any) -> None:
    """
    The script the symlink points at is compiled once and reused while the
    file is unchanged; switching the symlink or editing the file compiles
    again.
    """
    scripts, home = setUp(tmp_path)
    compiled: list[bytes] = []
    real = sieve_scripts.parseScript

    def counting(source: bytes, **kwargs: Any) -> Any:
        compiled.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(sieve_scripts, "parseScript", counting)
    activate(home, "one", "discard;\n")
    first = active(scripts, ALICE)
    assert first is not None and active(scripts, ALICE) is first
    assert len(compiled) == 1
    activate(home, "two", "keep;\n")
    second = active(scripts, ALICE)
    assert second is not first and len(compiled) == 2
    context = MessageContext(envelopeFrom="", envelopeTo=ALICE, originalRecipient=ALICE, header=b"\r\n", size=2)
    assert evaluate(second, context) == [Keep()]
    (home / "sieve" / "two.sieve").write_text("discard;\n# edited\n")
    assert active(scripts, ALICE) is not second and len(compiled) == 3
    (home / ".dovecot.sieve").unlink()
    assert active(scripts, ALICE) is None


def test_broken_script_logged_once(tmp_path: Path) -> None:
    """
    A script that does not compile gives L{None} and one warning naming
    the file, the account and the line, however many deliveries ask.
    """
    scripts, home = setUp(tmp_path)
    activate(home, "bad", 'require "fileinto";\nfileinto "x"\n')
    events = capture()
    try:
        for _ in range(3):
            assert active(scripts, ALICE) is None
    finally:
        globalLogPublisher.removeObserver(events.append)
    [line] = [text for text in logged(events) if "does not compile" in text]
    assert str(home / ".dovecot.sieve") in line and ALICE in line and "(line 3: " in line


def test_compiled_with_the_runner(tmp_path: Path) -> None:
    """
    A changed script is read and compiled through the runner (a thread in
    the server), an unchanged one is not.
    """
    calls: list[Any] = []

    def runner(f: Any, *args: Any) -> Any:
        calls.append(f)
        return synchronousRunner(f, *args)

    store = MaildirStore(tmp_path / "mail", runInThread=synchronousRunner, hostname="mx.example")
    scripts = MaildirSieveScripts(store, runBlocking=runner)
    home = tmp_path / "mail" / "example.com" / "alice" / "home"
    (home / "sieve").mkdir(parents=True)
    activate(home, "one", "keep;\n")
    assert active(scripts, ALICE) is not None
    assert active(scripts, ALICE) is not None
    assert len(calls) == 1


def test_oversized_script_not_run(tmp_path: Path) -> None:
    scripts, home = setUp(tmp_path, maxSize=100)
    activate(home, "big", "keep;\n" + "# padding\n" * 20)
    events = capture()
    try:
        assert active(scripts, ALICE) is None
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("over the limit of 100" in text for text in logged(events))
