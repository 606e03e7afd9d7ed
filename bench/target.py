"""
What a workload needs to know about a server under test, and how to start
the two servers compared: mailsrv (a L{RunningServer} in a temporary
directory) and the reference Postfix+Dovecot stack (C{../shared/peers}).

Workloads receive a L{Target} and never care which server it is; the
endpoint names are mailsrv's (C{smtp}, C{submission}, C{pop3s}, ...) for
both, mapped to the reference stack's high ports.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

from mailsrv.testing.server import RunningServer

DOMAIN = "example.test"
USERS = ("alice@example.test", "bob@example.test")
PASSWORD = "secret"

#: The reference stack's fixed loopback ports (../shared/peers/README.md).
PEER_PORTS = {
    "smtp": 2525,
    "submission": 2587,
    "submissions": 2465,
    "imap": 2143,
    "imaps": 2993,
    "pop3": 2110,
    "pop3s": 2995,
}
PEER_MAIL_ROOT = Path("/var/tmp/peers/mail")

#: Executables whose processes together are the reference stack.
PEER_EXECUTABLE_PREFIXES = ("/usr/lib/postfix/", "/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/lib/dovecot/")


@dataclasses.dataclass
class Target:
    """
    One server under test.

    @ivar name: C{"mailsrv"} or C{"reference"}.
    @ivar host: loopback address the server listens on.
    @ivar ports: endpoint name -> port (mailsrv's endpoint names).
    @ivar user: account that receives the test mail (and logs in).
    @ivar password: its password.
    @ivar otherUser: a second account, for workloads that must not disturb
        the first one's mailbox.
    @ivar mailRoot: the directory holding C{<domain>/<local>/} Maildirs.
    @ivar pids: returns the process ids that make up the server now (the
        reference stack forks per session, so this is asked each time).
    @ivar owner: (uid, gid) files written into the Maildirs must belong to,
        or L{None} to leave them as created.
    """

    name: str
    host: str
    ports: dict[str, int]
    user: str
    password: str
    otherUser: str
    mailRoot: Path
    pids: Callable[[], list[int]]
    owner: Optional[tuple[int, int]] = None

    def maildir(self, address: Optional[str] = None) -> Path:
        local, domain = (address or self.user).split("@")
        return self.mailRoot / domain / local


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def peerPids() -> list[int]:
    """
    Every live process of Postfix and Dovecot (master, smtpd, cleanup,
    qmgr, lmtp, imap, pop3, auth, ...).
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _exe(int(entry)).startswith(PEER_EXECUTABLE_PREFIXES):
            found.append(int(entry))
    return found


class MailsrvUnderTest:
    """
    A mailsrv process in a temporary directory with the benchmark accounts.
    """

    def __init__(
        self,
        messageSize: int = 60_000_000,
        passwordScheme: str = "PLAIN",
        extraConfig: str = "",
        endpoints: Optional[tuple[str, ...]] = None,
    ) -> None:
        """
        @param passwordScheme: C{"PLAIN"} stores the passwords as the
            reference stack's passwd-file does (C{{PLAIN}secret}), so that
            logins compare protocol work, not hash cost; C{"default"} keeps
            what C{mailsrv email add} writes (ARGON2ID, 64 MiB, 3 passes:
            about 0.1-0.2 s of CPU per login on purpose).
        @param extraConfig: more TOML for the server's configuration (the
            C{queue} workload points C{[dns]} and C{[delivery]} at its
            loopback fixtures).
        @param endpoints: the endpoints to run (default: all).
        """
        self._tmp = Path(tempfile.mkdtemp(prefix="mailsrv-bench-"))
        self.server = RunningServer(
            self._tmp,
            domain=DOMAIN,
            extraConfig=f"[limits]\nmessage_size = {messageSize}\n\n{extraConfig}",
            **({"endpoints": endpoints} if endpoints is not None else {}),
        )
        for user in USERS:
            self.server.addUser(user, PASSWORD)
        if passwordScheme == "PLAIN":
            (self.server.configDir / "postfix-accounts.cf").write_text(
                "".join(f"{user}|{{PLAIN}}{PASSWORD}\n" for user in USERS)
            )

    def start(self) -> Target:
        self.server.start()
        for user in USERS:
            # Deliveries create the Maildir; the workloads count files in it
            # from the start.
            for sub in ("new", "cur", "tmp"):
                (self.server.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
        process = self.server.process
        assert process is not None
        pid = process.pid
        return Target(
            name="mailsrv",
            host=self.server.host,
            ports=dict(self.server.ports),
            user=USERS[0],
            password=PASSWORD,
            otherUser=USERS[1],
            mailRoot=self.server.dataDir / "mail",
            pids=lambda: [pid],
        )

    def stop(self, keep: bool = False) -> None:
        self.server.stop()
        if not keep:
            shutil.rmtree(self._tmp, ignore_errors=True)


def startPeers(peersDir: Path) -> Target:
    """
    Run C{start.sh} of the reference stack (idempotent) and describe it.

    @raise RuntimeError: with the script's output when it fails.
    """
    script = peersDir / "start.sh"
    if not script.is_file():
        raise RuntimeError(f"{script} not found")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{script} exited {result.returncode}: {(result.stdout + result.stderr)[-2000:]}")
    import pwd

    vmail = pwd.getpwnam("vmail")
    for user in USERS:
        local, domain = user.split("@")
        for sub in ("new", "cur", "tmp"):
            d = PEER_MAIL_ROOT / domain / local / sub
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, vmail.pw_uid, vmail.pw_gid)
            os.chown(d.parent, vmail.pw_uid, vmail.pw_gid)
            os.chown(d.parent.parent, vmail.pw_uid, vmail.pw_gid)
    return Target(
        name="reference",
        host="127.0.0.1",
        ports=dict(PEER_PORTS),
        user=USERS[0],
        password=PASSWORD,
        otherUser=USERS[1],
        mailRoot=PEER_MAIL_ROOT,
        pids=peerPids,
        owner=(vmail.pw_uid, vmail.pw_gid),
    )


def stopPeers(peersDir: Path) -> None:
    subprocess.run(["bash", str(peersDir / "stop.sh")], capture_output=True, timeout=120)
