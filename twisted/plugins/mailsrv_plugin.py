# -*- test-case-name: tests.integration.test_twistd_plugin -*-
"""
twistd plugin: C{twistd mailsrv}.
"""

from twisted.application.service import ServiceMaker

mailsrv = ServiceMaker(
    "mailsrv",
    "mailsrv.tap",
    "Mail server: SMTP, submission, IMAP and POP3 with one TLS and auth policy",
    "mailsrv",
)
