# -*- test-case-name: tests.protocols.test_smtp_server -*-
"""
ESMTP parameters of MAIL FROM and RCPT TO that mailsrv honours: SIZE
(RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), AUTH (RFC 4954) and the
DSN parameters RET, ENVID, NOTIFY and ORCPT (RFC 3461), which are
validated and kept in the envelope for the queue's delivery reports.
"""

from __future__ import annotations

import re
from typing import Optional

from mailsrv.protocols.smtp import replies as R

# RFC 3461 section 4: xtext is printable ASCII except "+" and "=", with
# "+XX" hex escapes.
_XTEXT = re.compile(r"^(?:[!-*,-<>-~]|\+[0-9A-F]{2})*$")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
MAX_ENVID = 100


def isXtext(value: str) -> bool:
    return bool(_XTEXT.match(value))


def checkMailParameters(params: dict[str, Optional[str]], messageSizeLimit: int) -> Optional[R.Reply]:
    """
    @return: the refusal for the first bad parameter, or L{None}.
    """
    for key, value in params.items():
        if key == "SIZE":
            if value is None or not value.isdigit():
                return R.BAD_PARAM.format("SIZE")
            if int(value) > messageSizeLimit:
                return R.TOO_BIG
        elif key == "BODY":
            if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                return R.BAD_PARAM.format("BODY")
        elif key == "SMTPUTF8":
            if value is not None:
                return R.BAD_PARAM.format("SMTPUTF8")
        elif key == "AUTH":
            pass  # RFC 4954 section 5: accepted, and ignored unless trusted
        elif key == "RET":
            if value is None or value.upper() not in ("FULL", "HDRS"):
                return R.BAD_PARAM.format("RET")
        elif key == "ENVID":
            if value is None or len(value) > MAX_ENVID or not isXtext(value):
                return R.BAD_PARAM.format("ENVID")
        else:
            return R.BAD_PARAM.format(key)
    return None


def checkRcptParameters(params: dict[str, Optional[str]]) -> Optional[R.Reply]:
    for key, value in params.items():
        if key == "NOTIFY":
            if value is None:
                return R.BAD_PARAM.format("NOTIFY")
            items = value.upper().split(",")
            if items != ["NEVER"] and not (set(items) <= _NOTIFY and len(set(items)) == len(items)):
                return R.BAD_PARAM.format("NOTIFY")
        elif key == "ORCPT":
            addrType, sep, address = (value or "").partition(";")
            if not sep or addrType.lower() not in ("rfc822", "utf-8") or not address or len(address) > 500:
                return R.BAD_PARAM.format("ORCPT")
            if addrType.lower() == "rfc822" and not isXtext(address):
                return R.BAD_PARAM.format("ORCPT")
        else:
            return R.BAD_PARAM.format(key)
    return None
