"""
SMTP ingest into a mailbox with a Sieve script (mailsrv only): the C = 50
figure of L{bench.smtp_ingest} again, with a nine-rule script of the kind
webmail filter editors write (header, address, envelope C{:detail},
C{:regex}, C{:matches} and flag rules) active for the recipient.  None of
its rules matches the bench messages, so every one is evaluated and the
mail still lands in the INBOX, where the figure counts it.

The reference stack is not configured with Pigeonhole (its set-up is
shared with other checks), so the harness shows no reference figures; the
cost of a script is the difference from mailsrv's own C = 50 figure in the
same run.
"""

from __future__ import annotations

import os
from typing import Any

from bench.common import HIGHER, INFO, metric
from bench.smtp_ingest import sendAndWait
from bench.target import Target

SCRIPT = r"""require ["fileinto", "mailbox", "imap4flags", "envelope", "subaddress", "regex", "variables"];
if header :contains "List-Id" "python.org" { fileinto :create "Lists.Python"; stop; }
if header :contains "List-Id" "debian.org" { fileinto :create "Lists.Debian"; stop; }
if address :domain :is "from" ["bank.example", "shop.example"] { addflag "$Finance"; fileinto :create "Finance"; stop; }
if header :regex "subject" "^\\[(ticket|issue) #[0-9]+\\]" { fileinto :create "Tickets"; stop; }
if envelope :detail "to" "news" { fileinto :create "News"; stop; }
if header :contains "X-Spam" "Yes" { fileinto :create "Junk"; stop; }
if anyof (header :contains "subject" "urgent", header :is "X-Priority" "1") { addflag "\\Flagged"; }
if header :matches "subject" "*invoice*" { set "sub" "${2}"; addflag "$Invoice"; }
"""

FULL = (3000, 50)  # N messages, C sessions
QUICK = (200, 10)


def run(target: Target, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    n, c = QUICK if quick else FULL
    home = target.maildir() / "home"
    home.mkdir(parents=True, exist_ok=True)
    active = home / ".dovecot.sieve"
    active.write_text(SCRIPT)
    try:
        r = sendAndWait(target, target.ports["smtp"], n, c)
    finally:
        os.unlink(active)
    return {
        f"C={c} into Maildir, with a Sieve script": metric(r["accepted"] / r["deliveredSeconds"], "msg/s", HIGHER),
        f"C={c} mailsrv CPU": metric(100 * r["serverCpu"] / r["deliveredSeconds"], "% of a core", INFO),
        f"C={c} loadgen CPU": metric(100 * r["loadgenCpu"], "% of a core", INFO),
    }
