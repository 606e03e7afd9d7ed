# -*- test-case-name: tests.queue.test_submission -*-
"""
Spoof protection for the envelope sender of submitted mail.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger
from zope.interface import implementer

from mailsrv.envelope import Address, Session
from mailsrv.interfaces import IDirectory, ISenderPolicy
from mailsrv.pipeline.submission import isSubmission, notOwned, ownsAddress


@implementer(ISenderPolicy)
class OwnedSenderPolicy:
    """
    An authenticated user may only use a reverse path the account owns
    (see L{mailsrv.pipeline.submission}); everyone else is not this
    policy's business (the MX port checks senders with SPF and friends).

    The null reverse path C{<>} is allowed, as in Postfix's
    C{reject_sender_login_mismatch}: clients send vacation notices and
    read receipts with it, and the From: check still applies.
    """

    log = Logger()

    def __init__(self, directory: IDirectory) -> None:
        self.directory = directory

    def checkSender(self, session: Session, sender: Optional[Address]) -> None:
        if sender is None or not isSubmission(session):
            return
        account = session.authenticatedAs
        assert account is not None
        if not ownsAddress(self.directory, account, str(sender)):
            self.log.info(
                "MAIL FROM {mailFrom} refused for {account}: not owned",
                mailFrom=str(sender),
                account=account,
                sessionId=session.sessionId,
                endpoint=session.endpoint.name,
            )
            raise notOwned(account)
