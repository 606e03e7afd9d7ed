# -*- test-case-name: tests.integration.test_twistd_plugin -*-
"""
C{twistd mailsrv}: command-line options and the service maker.
"""

from __future__ import annotations

from pathlib import Path

from twisted.application.service import IService
from twisted.python import usage

from mailsrv.config.load import loadConfig
from mailsrv.config.schema import DEFAULT_CONFIG_FILE, Config
from mailsrv.errors import ConfigError


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run the mail server. Without --config, /etc/mailsrv/mailsrv.toml is read if "
        "it exists, else the embedded defaults are used (data in /var/lib/mailsrv, "
        "accounts in /etc/mailsrv, the seven standard ports)."
    )
    optParameters = [
        ["config", "c", None, "Path of the TOML configuration file."],
    ]

    config: Config

    def postOptions(self) -> None:
        path = self["config"]
        if path is None and DEFAULT_CONFIG_FILE.exists():
            path = str(DEFAULT_CONFIG_FILE)
        try:
            self.config = loadConfig(Path(path) if path else None)
        except ConfigError as e:
            # One line an operator can act on, not twistd's usage text.
            raise SystemExit(f"mailsrv: configuration error: {e}")


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from mailsrv.service import MailService

    return MailService(options.config, reactor)
