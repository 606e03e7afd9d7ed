# -*- test-case-name: tests.ops.test_importdms -*-
"""
C{mailsrv import-dms CONFIG_DIR MAIL_DIR}: take over a docker-mailserver
installation.

mailsrv reads docker-mailserver's formats as they are, so the import is a
careful copy, not a conversion:

 - C{postfix-accounts.cf}, C{postfix-virtual.cf}: merged into
   C{config_dir} (accounts and aliases already there win; every hash scheme
   docker-mailserver writes is accepted as it is);
 - C{dovecot-quotas.cf}: lines for addresses not yet listed are added;
 - C{opendkim/keys/<domain>/<selector>.private}: copied (mode 0600), so
   DKIM keeps the selector already published in DNS;
 - C{MAIL_DIR/<domain>/<user>/} Maildirs: copied (or moved with C{--move})
   to C{data_dir/mail/<domain>/<user>/} with every file, including
   C{dovecot-uidlist}, C{dovecot-uidvalidity} and C{dovecot-keywords}, so
   UIDs, UIDVALIDITY and keywords stay and clients do not download again,
   and C{home/} with the user's Sieve scripts (ManageSieve's C{home/sieve/}
   and the active C{home/.dovecot.sieve});
 - C{<user@domain>.dovecot.sieve}: a user's Sieve script kept in the config
   directory, which docker-mailserver installs as the active script at
   start; copied to C{home/.dovecot.sieve} unless the Maildir has one.

Nothing that exists is overwritten: an existing Maildir is skipped with a
warning, a differing DKIM key is kept and reported.  Run it with the
server stopped (or before the first start); it is safe to run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
from pathlib import Path
from typing import TextIO

from mailsrv.auth.files import (
    ACCOUNTS_FILE,
    VIRTUAL_FILE,
    AccountsDocument,
    ConfigFileError,
    VirtualDocument,
    lockedConfig,
    readAccounts,
    readVirtual,
    writeAccounts,
    writeVirtual,
)
from mailsrv.config.schema import Config

QUOTAS_FILE = "dovecot-quotas.cf"
DKIM_KEYS = Path("opendkim") / "keys"


@dataclasses.dataclass
class ImportReport:
    accounts: int = 0
    aliases: int = 0
    quotas: int = 0
    dkimKeys: int = 0
    maildirs: int = 0
    sieveScripts: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


class DMSImportError(Exception):
    """
    The source is not a docker-mailserver installation, or unreadable.
    """


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise DMSImportError(f"cannot read {path}: {e.strerror}") from None


def _isMaildir(path: Path) -> bool:
    return path.is_dir() and ((path / "cur").is_dir() or (path / "new").is_dir())


def _chownLike(path: Path, reference: Path) -> None:
    """
    As root, give imported files the owner of the directory they land in
    (the server's user), so the server can read them.
    """
    if os.geteuid() != 0 or not path.exists():
        return
    st = reference.stat()
    if not path.is_dir():
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, st.st_uid, st.st_gid)
        for name in files:
            os.chown(os.path.join(root, name), st.st_uid, st.st_gid, follow_symlinks=False)


def importDMS(config: Config, dmsConfig: Path, dmsMail: Path, *, move: bool = False, dryRun: bool = False) -> ImportReport:
    """
    Import a docker-mailserver installation into C{config}'s directories.

    @raise DMSImportError: if C{dmsConfig} has no accounts file or a file
        cannot be parsed; nothing is changed then.
    """
    report = ImportReport()
    configDir = config.server.configDir
    mailRoot = config.server.mailDir
    accountsText = _read(dmsConfig / ACCOUNTS_FILE)
    if not accountsText.strip():
        raise DMSImportError(f"{dmsConfig / ACCOUNTS_FILE} is missing or empty: not a docker-mailserver config directory")
    # Parse everything first: a malformed source changes nothing.
    sourceAccounts = AccountsDocument.fromText(accountsText, str(dmsConfig / ACCOUNTS_FILE))
    sourceVirtual = VirtualDocument.fromText(_read(dmsConfig / VIRTUAL_FILE), str(dmsConfig / VIRTUAL_FILE))
    for document in (sourceAccounts, sourceVirtual):
        for problem in document.problems:
            report.notes.append(f"skipped malformed line: {problem}")
    if not dryRun:
        configDir.mkdir(parents=True, exist_ok=True)
        mailRoot.mkdir(parents=True, exist_ok=True)
    with lockedConfig(configDir) if not dryRun else _nothing():
        accounts = readAccounts(configDir) if (configDir / ACCOUNTS_FILE).exists() else AccountsDocument.fromText("")
        for account, passwordHash in sourceAccounts.accounts().items():
            if account in accounts:
                report.notes.append(f"account {account} exists already: kept as it is")
                continue
            accounts.setPassword(account, passwordHash)
            report.accounts += 1
        virtual = readVirtual(configDir) if (configDir / VIRTUAL_FILE).exists() else VirtualDocument.fromText("")
        for alias, targets in sourceVirtual.aliases().items():
            for target in targets:
                if virtual.addTarget(alias, target):
                    report.aliases += 1
        if not dryRun:
            writeAccounts(configDir, accounts)
            writeVirtual(configDir, virtual)
        report.quotas = _mergeQuotas(dmsConfig / QUOTAS_FILE, configDir / QUOTAS_FILE, dryRun)
    report.dkimKeys = _copyDKIM(dmsConfig / DKIM_KEYS, configDir / DKIM_KEYS, report, dryRun)
    if not dryRun:
        # Run as root, files created here would be unreadable to the server.
        for created in (ACCOUNTS_FILE, VIRTUAL_FILE, QUOTAS_FILE, DKIM_KEYS.parts[0]):
            _chownLike(configDir / created, configDir)
    known = set(accounts.accounts())
    for domainDir in sorted(p for p in dmsMail.iterdir() if p.is_dir()) if dmsMail.is_dir() else []:
        for userDir in sorted(p for p in domainDir.iterdir() if _isMaildir(p)):
            address = f"{userDir.name}@{domainDir.name}".lower()
            target = mailRoot / domainDir.name.lower() / userDir.name.lower()
            if target.exists():
                report.notes.append(f"{target} exists already: {userDir} not imported")
                continue
            if address not in known:
                report.notes.append(f"Maildir {userDir} has no account {address}; imported anyway")
            if not dryRun:
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if move:
                    os.replace(userDir, target)
                else:
                    shutil.copytree(userDir, target, symlinks=True, copy_function=shutil.copy2)
                _chownLike(target, mailRoot)
            report.maildirs += 1
    report.sieveScripts = _copySieveScripts(dmsConfig, mailRoot, report, dryRun)
    return report


#: Suffix of the per-user Sieve scripts in docker-mailserver's config directory.
SIEVE_SUFFIX = ".dovecot.sieve"

#: Its server-wide scripts (Pigeonhole's sieve_before/sieve_after).
GLOBAL_SIEVE_SCRIPTS = ("before.dovecot.sieve", "after.dovecot.sieve")


def _copySieveScripts(dmsConfig: Path, mailRoot: Path, report: ImportReport, dryRun: bool) -> int:
    copied = 0
    for script in sorted(dmsConfig.glob(f"*{SIEVE_SUFFIX}")) if dmsConfig.is_dir() else []:
        if script.name in GLOBAL_SIEVE_SCRIPTS:
            report.notes.append(
                f"{script} is a server-wide Sieve script: not imported (mailsrv runs each user's own script only)"
            )
            continue
        address = script.name[: -len(SIEVE_SUFFIX)].lower()
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or "/" in address or address.startswith("."):
            report.notes.append(f"{script}: not named <user@domain>{SIEVE_SUFFIX}; not imported")
            continue
        destination = mailRoot / domain / local / "home" / ".dovecot.sieve"
        if os.path.lexists(destination):
            if not destination.exists() or destination.read_bytes() != script.read_bytes():
                report.notes.append(f"{destination} exists already: {script} not imported")
            continue
        if not dryRun:
            created = [p for p in (destination.parents[2], destination.parents[1], destination.parent) if not p.exists()]
            destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(script, destination)
            os.chmod(destination, 0o600)
            for path in [*created, destination]:
                _chownLike(path, mailRoot)
        copied += 1
    return copied


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _mergeQuotas(source: Path, target: Path, dryRun: bool) -> int:
    existing = _read(target)
    have = {line.split(":", 1)[0].strip().lower() for line in existing.splitlines() if ":" in line}
    added = [
        line.strip()
        for line in _read(source).splitlines()
        if ":" in line and not line.lstrip().startswith("#") and line.split(":", 1)[0].strip().lower() not in have
    ]
    if added and not dryRun:
        text = existing + ("" if not existing or existing.endswith("\n") else "\n") + "\n".join(added) + "\n"
        from mailsrv.auth.files import atomicWrite

        atomicWrite(target, text, 0o600, keepMode=True)
    return len(added)


def _copyDKIM(source: Path, target: Path, report: ImportReport, dryRun: bool) -> int:
    copied = 0
    for key in sorted(source.glob("*/*.private")) if source.is_dir() else []:
        destination = target / key.parent.name / key.name
        if destination.exists():
            if destination.read_bytes() != key.read_bytes():
                report.notes.append(f"{destination} differs from {key}: kept the existing key")
            continue
        if not dryRun:
            destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copyfile(key, destination)
            os.chmod(destination, 0o600)
            txt = key.with_suffix(".txt")
            if txt.exists():
                shutil.copyfile(txt, destination.with_suffix(".txt"))
        copied += 1
    return copied


def importCommand(config: Config, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    C{mailsrv import-dms CONFIG_DIR MAIL_DIR [--move] [--dry-run]}.
    """
    try:
        report = importDMS(config, args.dms_config, args.dms_mail, move=args.move, dryRun=args.dry_run)
    except (DMSImportError, ConfigFileError, OSError) as e:
        print(f"mailsrv: {e}", file=err)
        return 1
    for note in report.notes:
        print(f"mailsrv: note: {note}", file=err)
    verb = "Would import" if args.dry_run else "Imported"
    print(
        f"{verb} {report.accounts} accounts, {report.aliases} alias targets, {report.quotas} quotas, "
        f"{report.dkimKeys} DKIM keys, {report.maildirs} Maildirs, {report.sieveScripts} Sieve scripts "
        f"into {config.server.configDir} and {config.server.mailDir}",
        file=out,
    )
    return 0
