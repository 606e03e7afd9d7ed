# -*- test-case-name: tests.ops.test_commands -*-
"""
The operator subcommands of C{mailsrv}: C{reload}, C{dns-records},
C{doctor}, C{import-dms} and C{sieve}.

They live here rather than in L{mailsrv.cli} so that the admin command's
module stays about accounts and aliases; L{mailsrv.cli} only registers them
(L{addOpsCommands}) and hands matching arguments to L{runOpsCommand}.
Heavy imports happen inside each command, so C{mailsrv --help} stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_USER = 1
EXIT_CONFIG = 2

OPS_GROUPS = frozenset({"reload", "dns-records", "doctor", "import-dms", "sieve"})


def addOpsCommands(groups: Any) -> None:
    """
    Register the operator subcommands on the admin command's subparsers.
    """
    groups.add_parser(
        "reload",
        help="make the running server re-read its configuration (sends SIGHUP)",
        description="Validate the configuration file, then send SIGHUP to the server whose process "
        "id is in data_dir/state/mailsrv.pid.  An invalid file is reported here and not signalled.",
    )
    sub = groups.add_parser("dns-records", help="print the DNS records to publish for a domain")
    sub.add_argument("domain")
    sub.add_argument("--ip", action="append", default=[], help="public address of this server (repeatable)")
    sub.add_argument("--dmarc-rua", default=None, help="address for DMARC aggregate reports (default dmarc-reports@DOMAIN)")
    sub.add_argument("--tlsrpt-rua", default=None, help="address for TLS reports (default tls-reports@DOMAIN)")
    sub = groups.add_parser("doctor", help="check the installation and print pass/warn/fail lines")
    sub.add_argument("domain", nargs="?", help="mail domain to check (default: each of server.domains)")
    sub.add_argument("--no-dns", action="store_true", help="skip the DNS checks")
    sub.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    sub.add_argument("--ip", action="append", default=[], help="public address of this server (default: A/AAAA of server.hostname)")
    sub.add_argument("--dnsbl", action="append", default=[], help="DNS blocklist zone (repeatable; default zen.spamhaus.org, bl.spamcop.net)")
    sub.add_argument("--port25-probe", default="gmail-smtp-in.l.google.com:25", help="HOST:PORT of an MX to test outbound port 25 with")
    sub.add_argument("--no-port25", action="store_true", help="skip the outbound port 25 check")
    sub = groups.add_parser(
        "import-dms",
        help="import a docker-mailserver installation (config and mail directories)",
    )
    sub.add_argument("dms_config", type=Path, help="docker-mailserver's config directory (docker-data/dms/config)")
    sub.add_argument("dms_mail", type=Path, help="docker-mailserver's mail directory (docker-data/dms/mail-data)")
    sub.add_argument("--move", action="store_true", help="rename the Maildirs instead of copying them")
    sub.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    from mailsrv.ops.sievecheck import addSieveCommands

    addSieveCommands(groups)


def runOpsCommand(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Run one operator subcommand; returns the exit code.
    """
    from mailsrv.cli import _loadConfig
    from mailsrv.errors import ConfigError

    if args.group == "doctor":
        from mailsrv.ops.doctor import runDoctor

        return runDoctor(args, out, err)
    try:
        config = _loadConfig(args.config)
    except ConfigError as e:
        print(str(e), file=err)
        return EXIT_CONFIG
    if args.group == "reload":
        from mailsrv.ops.reload import signalRunningServer

        try:
            pid = signalRunningServer(config)
        except LookupError as e:
            print(f"mailsrv: {e}", file=err)
            return EXIT_USER
        print(f"Configuration {config.source} is valid; sent SIGHUP to process {pid}", file=out)
        return EXIT_OK
    if args.group == "dns-records":
        from mailsrv.ops.dnsrecords import dnsRecordsCommand

        return dnsRecordsCommand(config, args, out, err)
    if args.group == "sieve":
        from mailsrv.ops.sievecheck import sieveCommand

        return sieveCommand(config, args, out, err)
    from mailsrv.ops.importdms import importCommand

    return importCommand(config, args, out, err)
