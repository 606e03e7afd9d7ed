# -*- test-case-name: tests.ops.test_sievecheck -*-
"""
C{mailsrv sieve check [ACCOUNT|FILE ...]} and C{mailsrv sieve test ACCOUNT
MESSAGE}: what an operator (or a user) needs to fix a filter without sending
mail through it, as Pigeonhole's C{sievec} and C{sieve-test} do.

C{check} compiles scripts: the given files, the active scripts of the given
accounts, or with no argument every account's active script under the mail
directory.  C{test} runs an account's active script on a message file and
prints the actions it would take; nothing is delivered or sent.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, TextIO

from mailsrv.config.schema import Config

EXIT_OK = 0
EXIT_USER = 1


def addSieveCommands(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sieve = groups.add_parser("sieve", help="check users' Sieve filters, or try one on a message")
    commands = sieve.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("check", help="compile scripts and report errors with line numbers")
    sub.add_argument("targets", nargs="*", help="script files or account addresses (default: every account's active script)")
    sub = commands.add_parser("test", help="print what an account's active script does with a message file")
    sub.add_argument("account")
    sub.add_argument("message", type=Path, help="an RFC 5322 message file")
    sub.add_argument("--from", dest="sender", default="sender@example.net", help="envelope sender (default sender@example.net; \"\" for <>)")
    sub.add_argument("--to", dest="recipient", default=None, help="envelope recipient as given (default: the account)")


def activeScripts(mailRoot: Path) -> Iterator[tuple[str, Path]]:
    """
    (account, path) of every account's active script under the mail root.
    """
    if not mailRoot.is_dir():
        return
    for domain in sorted(p for p in mailRoot.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for account in sorted(p for p in domain.iterdir() if p.is_dir() and not p.name.startswith(".")):
            script = account / "home" / ".dovecot.sieve"
            if os.path.lexists(script):
                yield f"{account.name}@{domain.name}", script


def _scriptPath(config: Config, target: str) -> tuple[str, Path]:
    if "@" in target and not os.path.exists(target):
        local, _, domain = target.lower().rpartition("@")
        return target.lower(), config.server.mailDir / domain / local / "home" / ".dovecot.sieve"
    return "", Path(target)


def checkCommand(config: Config, targets: list[str], out: TextIO, err: TextIO) -> int:
    from mailsrv.sieve import SieveError, parseScript
    from mailsrv.storage.sieve_scripts import MAX_SCRIPT_SIZE

    found = [_scriptPath(config, t) for t in targets] if targets else list(activeScripts(config.server.mailDir))
    failed = 0
    for account, path in found:
        label = f"{path} ({account})" if account else str(path)
        try:
            source = path.read_bytes()
            parseScript(source, maxSize=config.sieve.maxScriptSize or MAX_SCRIPT_SIZE)
        except OSError as e:
            print(f"error {label}: {e.strerror}", file=out)
            failed += 1
        except SieveError as e:
            print(f"error {label}: {e}", file=out)
            failed += 1
        else:
            print(f"ok    {label}", file=out)
    if not found:
        print(f"No active Sieve scripts under {config.server.mailDir}", file=out)
    return EXIT_USER if failed else EXIT_OK


def testCommand(config: Config, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mailsrv.delivery.sieve import SIEVE_DELIMITER
    from mailsrv.errors import MailError
    from mailsrv.mailbox_names import INBOX, hierarchyToStore
    from mailsrv.sieve import FileInto, Keep, MessageContext, SieveError, Vacation, evaluate, parseScript
    from mailsrv.sieve.vacation import vacationApplies
    from mailsrv.storage.maildir import MaildirStore

    account = args.account.lower()
    _, path = _scriptPath(config, account)
    try:
        script = parseScript(path.read_bytes(), maxSize=config.sieve.maxScriptSize)
        data = args.message.read_bytes()
    except OSError as e:
        print(f"mailsrv: {e.filename}: {e.strerror}", file=err)
        return EXIT_USER
    except SieveError as e:
        print(f"mailsrv: {path}: {e}", file=err)
        return EXIT_USER
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = data.find(b"\r\n\r\n")
    header, body = (data[: end + 4], data[end + 4 :]) if end >= 0 else (data + b"\r\n", b"")
    store = MaildirStore(config.server.mailDir)

    def mailboxExists(name: str) -> bool:
        try:
            folder = hierarchyToStore(name, SIEVE_DELIMITER)
            return folder == INBOX or folder in store.listFolders(account)
        except MailError:
            return False

    recipient = args.recipient or account
    context = MessageContext(
        envelopeFrom=args.sender,
        envelopeTo=recipient,
        originalRecipient=recipient,
        header=header,
        size=len(data),
        body=body,
        mailboxExists=mailboxExists,
        now=datetime.now(timezone.utc),
    )
    try:
        actions = evaluate(script, context)
    except SieveError as e:
        print(f"Runtime error: {e}; the message would be kept in the INBOX", file=out)
        return EXIT_OK
    print(f"Script {path}, for {account}:", file=out)
    for action in actions:
        print(f"  {describe(action)}", file=out)
        if isinstance(action, Vacation):
            applies, why = vacationApplies(action, context, userAddresses=[account, recipient])
            print(f"    the reply {'goes out (once per period)' if applies else 'is not sent: ' + why}", file=out)
    if not any(isinstance(a, (Keep, FileInto)) for a in actions):
        print("  (no copy kept in the mailbox)", file=out)
    return EXIT_OK


def describe(action: object) -> str:
    """
    One action the way a script would say it.
    """
    from mailsrv.sieve import Discard, FileInto, Keep, Redirect, Vacation

    def flags(values: frozenset[str]) -> str:
        return f" with flags {' '.join(sorted(values))}" if values else ""

    if isinstance(action, Keep):
        return f"keep (INBOX){flags(action.flags)}"
    if isinstance(action, FileInto):
        return f"fileinto {action.mailbox!r}{' :create' if action.create else ''}{flags(action.flags)}"
    if isinstance(action, Redirect):
        return f"redirect{' :copy' if action.copy else ''} to {action.address}"
    if isinstance(action, Discard):
        return "discard"
    if isinstance(action, Vacation):
        subject = f" subject {action.subject!r}" if action.subject else ""
        return f"vacation{subject}, at most once per {action.days} days"
    return repr(action)


def sieveCommand(config: Config, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "check":
        return checkCommand(config, args.targets, out, err)
    return testCommand(config, args, out, err)
