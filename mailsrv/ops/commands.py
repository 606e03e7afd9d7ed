# -*- test-case-name: tests.ops.test_commands -*-
"""
The operator subcommands of C{mailsrv}: C{reload}, C{dns-records},
C{doctor} and C{import-dms}.

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

OPS_GROUPS = frozenset({"reload"})


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


def runOpsCommand(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """
    Run one operator subcommand; returns the exit code.
    """
    from mailsrv.cli import _loadConfig
    from mailsrv.errors import ConfigError

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
    raise AssertionError(args.group)
