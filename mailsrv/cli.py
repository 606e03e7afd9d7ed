# -*- test-case-name: tests.test_cli -*-
"""
C{mailsrv}: the administration command, in the spirit of docker-mailserver's
C{setup}.

It edits the files in C{server.config_dir} that the running server reads
(the server notices the change within a second).  Every edit takes the
config directory lock, re-reads the file, changes it and replaces it
atomically, so concurrent runs cannot lose each other's changes.

Exit codes: 0 success, 1 a usage or user error (bad address, no such
account...), 2 a configuration error.  Each error is one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, Sequence, TextIO

from mailsrv.auth.files import (
    ConfigFileError,
    addressProblem,
    canonicalAddress,
    lockedConfig,
    readAccounts,
    readVirtual,
    writeAccounts,
    writeVirtual,
)
from mailsrv.auth.passwords import hashPassword
from mailsrv.errors import ConfigError
from mailsrv.ops.commands import OPS_GROUPS, addOpsCommands, runOpsCommand

if TYPE_CHECKING:
    from mailsrv.config.schema import Config

DEFAULT_CONFIG = Path("/etc/mailsrv/mailsrv.toml")

EXIT_OK = 0
EXIT_USER = 1
EXIT_CONFIG = 2


class CommandError(Exception):
    """
    A user error: the message is printed as it is and the exit code is 1.
    """


class Admin:
    """
    The operations behind the subcommands, on one config directory.

    Kept apart from argument parsing so that they can be driven directly.
    Notes and warnings go to C{err}; listings go to C{out}.

    @param configDir: where C{postfix-accounts.cf} and
        C{postfix-virtual.cf} live (created if missing).
    @param domains: the configured local domains.
    @param hasher: turns a new password into a C{{SCHEME}hash}.
    """

    def __init__(
        self,
        configDir: Path,
        domains: Sequence[str],
        out: TextIO,
        err: TextIO,
        hasher: Callable[[bytes], str] = hashPassword,
    ) -> None:
        self.configDir = configDir
        self.domains = frozenset(d.lower() for d in domains)
        self.out = out
        self.err = err
        self._hash = hasher

    # ------------------------------------------------------------ helpers

    def _checkAddress(self, address: str, what: str, allowCatchAll: bool = False) -> str:
        problem = addressProblem(address, allowCatchAll=allowCatchAll)
        if problem is not None:
            raise CommandError(f"invalid {what} {address!r}: {problem}")
        return canonicalAddress(address)

    def _note(self, text: str) -> None:
        print(f"mailsrv: note: {text}", file=self.err)

    def _warn(self, text: str) -> None:
        print(f"mailsrv: warning: {text}", file=self.err)

    def _noteNewDomain(self, address: str) -> None:
        domain = address.rpartition("@")[2]
        if domain in self.domains:
            return
        known = {a.rpartition("@")[2] for a in readAccounts(self.configDir).accounts()}
        known |= {a.rpartition("@")[2] for a in readVirtual(self.configDir).aliases()}
        if domain not in known:
            self._note(f"domain {domain} is new: it will be treated as local")

    def _ensureConfigDir(self) -> None:
        try:
            self.configDir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CommandError(f"cannot create {self.configDir}: {e.strerror}") from None

    # ----------------------------------------------------------- accounts

    def emailAdd(self, address: str, password: bytes) -> None:
        account = self._checkAddress(address, "address")
        self._ensureConfigDir()
        with lockedConfig(self.configDir):
            accounts = readAccounts(self.configDir)
            if account in accounts:
                raise CommandError(f"account {account} already exists, use email update")
            self._noteNewDomain(account)
            accounts.setPassword(account, self._hash(password))
            writeAccounts(self.configDir, accounts)
            if account in readVirtual(self.configDir).aliases():
                self._warn(
                    f"an alias {account} exists: mail to it follows the alias; "
                    f"add {account} as a target to deliver it here too"
                )
        print(f"Added account {account}", file=self.out)

    def emailUpdate(self, address: str, password: bytes) -> None:
        account = self._checkAddress(address, "address")
        self._ensureConfigDir()
        with lockedConfig(self.configDir):
            accounts = readAccounts(self.configDir)
            if account not in accounts:
                raise CommandError(f"no account {account}, use email add")
            accounts.setPassword(account, self._hash(password))
            writeAccounts(self.configDir, accounts)
        print(f"Updated password of {account}", file=self.out)

    def emailDel(self, address: str) -> None:
        """
        Delete an account.  Aliases pointing to it are left alone (they may
        also point elsewhere) but named in a warning.  Its mail stays on
        disk.
        """
        account = self._checkAddress(address, "address")
        self._ensureConfigDir()
        with lockedConfig(self.configDir):
            accounts = readAccounts(self.configDir)
            if not accounts.remove(account):
                raise CommandError(f"no account {account}")
            writeAccounts(self.configDir, accounts)
            pointing = sorted(
                alias
                for alias, targets in readVirtual(self.configDir).aliases().items()
                if account in (canonicalAddress(t) for t in targets)
            )
        print(f"Deleted account {account}", file=self.out)
        if pointing:
            self._warn(f"aliases still pointing to {account}: {', '.join(pointing)}")

    def emailList(self) -> None:
        for account in sorted(readAccounts(self.configDir).accounts()):
            print(account, file=self.out)

    # ------------------------------------------------------------ aliases

    def aliasAdd(self, alias: str, target: str) -> None:
        alias = self._checkAddress(alias, "alias", allowCatchAll=True)
        targetProblem = addressProblem(target)
        if targetProblem is not None:
            raise CommandError(f"invalid target {target!r}: {targetProblem}")
        self._ensureConfigDir()
        with lockedConfig(self.configDir):
            virtual = readVirtual(self.configDir)
            isNew = alias not in virtual.aliases()
            if isNew:
                self._noteNewDomain(alias)
            if not virtual.addTarget(alias, target):
                raise CommandError(f"alias {alias} already has target {target}")
            writeVirtual(self.configDir, virtual)
            if (
                isNew
                and alias in readAccounts(self.configDir)
                and canonicalAddress(target) != alias
            ):
                self._warn(
                    f"{alias} is also an account: its mail now follows the alias; "
                    f"add {alias} as a target to deliver it there too"
                )
        print(f"Alias {alias} -> {target}", file=self.out)

    def aliasDel(self, alias: str, target: Optional[str] = None) -> None:
        alias = self._checkAddress(alias, "alias", allowCatchAll=True)
        self._ensureConfigDir()
        with lockedConfig(self.configDir):
            virtual = readVirtual(self.configDir)
            if alias not in virtual.aliases():
                raise CommandError(f"no alias {alias}")
            if target is None:
                virtual.removeAlias(alias)
            elif not virtual.removeTarget(alias, target):
                raise CommandError(f"alias {alias} has no target {target}")
            writeVirtual(self.configDir, virtual)
        if target is None:
            print(f"Deleted alias {alias}", file=self.out)
        else:
            print(f"Removed {target} from alias {alias}", file=self.out)

    def aliasList(self) -> None:
        for alias, targets in sorted(readVirtual(self.configDir).aliases().items()):
            print(f"{alias} {','.join(targets)}", file=self.out)


# ------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that raises instead of exiting, so that L{main}
    returns an exit code (and tests can call it).
    """

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def _buildParser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailsrv", description="Administer a mailsrv installation.")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"configuration file (default: {DEFAULT_CONFIG} if it exists, else built-in defaults)",
    )
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)

    email = groups.add_parser("email", help="mail accounts")
    emailCommands = email.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, helpText in (("add", "add an account"), ("update", "change a password")):
        sub = emailCommands.add_parser(name, help=helpText)
        sub.add_argument("address")
        sub.add_argument(
            "password",
            nargs="?",
            help="prompted for (or read from standard input) when omitted",
        )
    emailCommands.add_parser("del", help="delete an account").add_argument("address")
    emailCommands.add_parser("list", help="list accounts")

    alias = groups.add_parser("alias", help="aliases and catch-alls (@domain)")
    aliasCommands = alias.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub = aliasCommands.add_parser("add", help="add a target to an alias")
    sub.add_argument("alias")
    sub.add_argument("target")
    sub = aliasCommands.add_parser("del", help="delete an alias, or one of its targets")
    sub.add_argument("alias")
    sub.add_argument("target", nargs="?")
    aliasCommands.add_parser("list", help="list aliases")
    addOpsCommands(groups)

    ban = groups.add_parser("ban", help="addresses banned after failed logins")
    banCommands = ban.add_subparsers(dest="command", required=True, parser_class=_Parser)
    banCommands.add_parser("list", help="list the bans in force")
    banCommands.add_parser("del", help="lift the ban of an address (IPv6: its /64)").add_argument("address")

    queue = groups.add_parser("queue", help="the outbound queue (safe while the server runs)")
    queueCommands = queue.add_subparsers(dest="command", required=True, parser_class=_Parser)
    queueCommands.add_parser("list", help="one line per queued message")
    queueCommands.add_parser("show", help="envelope, recipient states and headers of a message").add_argument("id")
    queueCommands.add_parser("flush", help="make the running server retry deferred messages now")
    queueCommands.add_parser("delete", help="remove a message from the queue").add_argument("id")

    dkim = groups.add_parser("dkim", help="DKIM signing keys")
    dkimCommands = dkim.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub = dkimCommands.add_parser("generate", help="create a signing key and print its DNS TXT record")
    sub.add_argument("domain")
    sub.add_argument("--selector", default=None, help="DKIM selector (default: [dkim] selector, \"mail\")")
    sub.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    sub.add_argument("--force", action="store_true", help="replace an existing key of that selector")
    return parser


def queueCommand(config: "Config", command: str, queueId: Optional[str], out: TextIO) -> None:
    """
    C{mailsrv queue list|show|flush|delete} on C{data_dir/queue}.
    """
    from mailsrv.queue.admin import QueueAdmin, QueueCommandError
    from mailsrv.queue.spool import Spool

    admin = QueueAdmin(Spool(config.server.queueDir), out)
    try:
        if command == "list":
            admin.list()
        elif command == "show":
            assert queueId is not None
            admin.show(queueId)
        elif command == "flush":
            admin.flush()
        else:
            assert queueId is not None
            admin.delete(queueId)
    except QueueCommandError as e:
        raise CommandError(str(e)) from None


def dkimCommand(config: "Config", args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
    """
    C{mailsrv dkim generate DOMAIN}: write the key where the signer looks
    for it and print the record to publish.
    """
    from mailsrv.pipeline.dkim import DKIMKeyError, generateKey

    try:
        key = generateKey(
            config.server.configDir,
            args.domain,
            args.selector or config.dkim.selector,
            bits=args.bits,
            replace=args.force,
        )
    except DKIMKeyError as e:
        raise CommandError(str(e)) from None
    print(f"mailsrv: note: private key written to {key.privatePath}; publish this TXT record:", file=err)
    out.write(key.zoneRecord())


def banCommand(config: "Config", command: str, address: Optional[str], out: TextIO) -> None:
    """
    C{mailsrv ban list|del}: read or edit the ban list the running server
    keeps (it notices the change at the next login attempt).
    """
    import time

    from mailsrv.auth.throttle import BanFile, banFilePath, parseBanKey

    banFile = BanFile(banFilePath(config))
    if command == "list":
        try:
            bans = banFile.read()
        except ValueError as e:
            raise CommandError(str(e)) from None
        now = time.time()
        for ban in sorted(bans.values(), key=lambda b: b.key):
            if ban.until > now:
                until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.until))
                print(f"{ban.key} until {until} ({ban.reason})", file=out)
        return
    assert address is not None
    try:
        key = parseBanKey(address)
    except ValueError as e:
        raise CommandError(str(e)) from None
    try:
        removed = banFile.remove(key)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if not removed:
        raise CommandError(f"{key} is not banned")
    print(f"Lifted the ban of {key}", file=out)


def readPassword(given: Optional[str], stdin: TextIO) -> bytes:
    """
    The new password: the argument if given; else asked twice (without
    echo) on a terminal; else the first line of standard input, so that
    scripts can pipe it in without it showing in C{ps}.
    """
    if given is not None:
        password = given
    elif stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CommandError("the passwords do not match")
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("the password must not be empty")
    return password.encode("utf-8")


def _loadConfig(path: Optional[Path]) -> "Config":
    # Imported here so that "mailsrv --help" works even where the config
    # machinery cannot be imported.
    from mailsrv.config.load import loadConfig

    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    return loadConfig(path)


def main(
    argv: Optional[Sequence[str]] = None,
    stdin: Optional[TextIO] = None,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """
    Run the C{mailsrv} command; returns the exit code.
    """
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        args = _buildParser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except CommandError as e:
        print(f"mailsrv: {e}", file=err)
        return EXIT_USER
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else EXIT_OK

    if args.group in OPS_GROUPS:
        return runOpsCommand(args, out, err)

    try:
        config = _loadConfig(args.config)
    except ConfigError as e:
        print(str(e), file=err)
        return EXIT_CONFIG

    admin = Admin(config.server.configDir, config.server.domains, out, err)
    try:
        if args.group == "ban":
            banCommand(config, args.command, getattr(args, "address", None), out)
        elif args.group == "queue":
            queueCommand(config, args.command, getattr(args, "id", None), out)
        elif args.group == "dkim":
            dkimCommand(config, args, out, err)
        elif args.group == "email":
            if args.command == "add":
                admin.emailAdd(args.address, readPassword(args.password, stdin))
            elif args.command == "update":
                admin.emailUpdate(args.address, readPassword(args.password, stdin))
            elif args.command == "del":
                admin.emailDel(args.address)
            else:
                admin.emailList()
        else:
            if args.command == "add":
                admin.aliasAdd(args.alias, args.target)
            elif args.command == "del":
                admin.aliasDel(args.alias, args.target)
            else:
                admin.aliasList()
    except CommandError as e:
        print(f"mailsrv: {e}", file=err)
        return EXIT_USER
    except ConfigFileError as e:
        print(f"mailsrv: {e}", file=err)
        return EXIT_CONFIG
    except OSError as e:
        print(f"mailsrv: {e.filename or config.server.configDir}: {e.strerror}", file=err)
        return EXIT_CONFIG
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
