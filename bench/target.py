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
import inspect
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

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

#: C{[limits]} of every mailsrv the bench starts, the one place to raise a
#: limit: the workloads open up to 10,000 IMAP connections for one user
#: from 127.0.0.1 at once (plus the SMTP sessions), and a cap meant for the
#: open Internet would turn the benchmark into a test of the cap.  A
#: connection limit added to C{[limits]} later (per IP, per user and IP,
#: per protocol) gets one line here; L{unraisedConnectionLimits} names the
#: ones the configuration loader knows that are missing.  The reference
#: stack's counterparts are in C{../shared/peers/conf} (Dovecot
#: C{mail_max_userip_connections = 4000}, C{process_limit}, Postfix
#: C{smtpd_client_connection_count_limit = 0}).
MAILSRV_LIMITS: dict[str, Union[int, float, str]] = {
    # The 50 MB message of bench/bigmsg.py, with room for headers.
    "message_size": 60_000_000,
    "max_connections": 30_000,
    "max_connections_per_ip": 30_000,
    "imap_max_connections": 30_000,
    "imap_max_connections_per_ip": 30_000,
    "pop3_max_connections": 30_000,
    "pop3_max_connections_per_ip": 30_000,
    # The idle workload logs one user in from one address thousands of
    # times (the reference Dovecot's mail_max_userip_connections is raised
    # likewise); 0 is no limit.
    "max_connections_per_user_ip": 0,
}

#: Files the bench may open at once: 10,000 IMAP connections in the server
#: and as many in the load generator (children inherit the limit).
OPEN_FILES = 25_000

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
    @ivar settle: waits until mail accepted earlier is no longer being
        delivered (the reference's Postfix queue is empty), so that one
        workload's stragglers do not land in the next one's Maildir.
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
    settle: Callable[[], None] = lambda: None

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


def raiseFileLimit(wanted: int = OPEN_FILES) -> int:
    """
    Raise this process's soft C{RLIMIT_NOFILE} towards C{wanted} (never
    above the hard limit); servers and load-generator processes started
    afterwards inherit it.

    @return: the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def limitsTable(overrides: Optional[Mapping[str, Union[int, float, str]]] = None) -> str:
    """
    The C{[limits]} table for a mailsrv under test: L{MAILSRV_LIMITS} with
    C{overrides} on top.
    """
    values = {**MAILSRV_LIMITS, **(overrides or {})}
    lines = []
    for key, value in values.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "[limits]\n" + "\n".join(lines) + "\n"


def unraisedConnectionLimits() -> list[str]:
    """
    The C{[limits]} keys about connections that mailsrv's configuration
    loader reads but L{MAILSRV_LIMITS} does not set: a cap added after the
    bench was written, still at its (Internet-facing) default.
    """
    from mailsrv.config import load

    try:
        source = inspect.getsource(load._limits)
    except (AttributeError, OSError, TypeError):
        return []
    keys = re.findall(r"""take\(\s*["']([a-z0-9_]+)["']""", source)
    return [k for k in keys if "connection" in k and k not in MAILSRV_LIMITS and not k.endswith("exceptions")]


class MailsrvUnderTest:
    """
    A mailsrv process in a temporary directory with the benchmark accounts.
    """

    def __init__(
        self,
        passwordScheme: str = "PLAIN",
        extraConfig: str = "",
        endpoints: Optional[tuple[str, ...]] = None,
        limits: Optional[Mapping[str, Union[int, float, str]]] = None,
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
        @param limits: C{[limits]} keys over L{MAILSRV_LIMITS}.
        """
        self._tmp = Path(tempfile.mkdtemp(prefix="mailsrv-bench-"))
        self.server = RunningServer(
            self._tmp,
            domain=DOMAIN,
            extraConfig=f"{limitsTable(limits)}\n{extraConfig}",
            **({"endpoints": endpoints} if endpoints is not None else {}),
        )
        for user in USERS:
            self.server.addUser(user, PASSWORD)
        if passwordScheme == "PLAIN":
            (self.server.configDir / "postfix-accounts.cf").write_text(
                "".join(f"{user}|{{PLAIN}}{PASSWORD}\n" for user in USERS)
            )

    def start(self) -> Target:
        raiseFileLimit()
        for key in unraisedConnectionLimits():
            print(f"bench: [limits] {key} is not raised in bench/target.py MAILSRV_LIMITS;"
                  " a workload may hit it", file=sys.stderr)
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
            # The server and its commit process (which writes deliveries).
            pids=lambda: [pid, *self.server.childPids()],
        )

    def stop(self, keep: bool = False) -> None:
        self.server.stop()
        if not keep:
            shutil.rmtree(self._tmp, ignore_errors=True)


def defaultPeersDir() -> Path:
    """
    The reference stack's scripts: C{$MAILSRV_PEERS_DIR}, else the first
    C{shared/peers} beside the checkout or one level up (a git worktree
    lives one directory deeper than the main checkout).
    """
    if os.environ.get("MAILSRV_PEERS_DIR"):
        return Path(os.environ["MAILSRV_PEERS_DIR"])
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo.parent / "shared" / "peers", repo.parent.parent / "shared" / "peers"]
    for candidate in candidates:
        if (candidate / "start.sh").is_file():
            return candidate
    return candidates[0]


def peersRunning() -> bool:
    """
    Whether any process of the reference stack is alive.
    """
    return bool(peerPids())


def _runScript(script: Path, log: Path, timeout: float) -> int:
    """
    Run one of the reference stack's scripts with its output appended to
    C{log} and no terminal: the daemons it starts (Dovecot double-forks)
    inherit the script's stdout and stderr, so with pipes the caller would
    wait for end-of-file until they exit; in a session of its own so that
    a Ctrl-C meant for the bench does not reach them, and so that a script
    that overruns C{timeout} can be killed with its children.

    @return: the script's exit status.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {script}\n".encode())
        out.flush()
        process = subprocess.Popen(
            ["bash", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"{script} ran over {timeout:.0f} s (output in {log})")


def _tail(log: Path, size: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def startPeers(peersDir: Path, runDir: Optional[Path] = None) -> Target:
    """
    Run C{start.sh} of the reference stack (idempotent) and describe it.

    @param runDir: where C{peers.log} (the script's output) goes; default
        the stack's own log directory.
    @raise RuntimeError: with the end of the script's output when it fails.
    """
    script = peersDir / "start.sh"
    if not script.is_file():
        raise RuntimeError(f"{script} not found")
    log = (runDir or PEER_MAIL_ROOT.parent / "log") / "peers.log"
    status = _runScript(script, log, timeout=900)
    if status != 0:
        raise RuntimeError(f"{script} exited {status}: {_tail(log)}")
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
        settle=waitForPostfixQueue,
    )


def postfixQueueLength() -> int:
    """
    Messages in the reference's Postfix queue (C{postqueue -j}: one JSON
    object per message), or 0 if it cannot be asked.
    """
    try:
        out = subprocess.run(["postqueue", "-j"], capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.strip())


def waitForPostfixQueue(timeout: float = 900) -> None:
    """
    Wait until Postfix has delivered (or given up on) what it queued.

    @raise RuntimeError: if messages are still queued after C{timeout}.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = postfixQueueLength()
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} messages still in the reference's Postfix queue after {timeout:.0f} s")
        time.sleep(0.5)


def stopPeers(peersDir: Path, runDir: Optional[Path] = None, timeout: float = 60) -> list[int]:
    """
    Run C{stop.sh} and wait until every process of the stack has exited
    (Dovecot's per-session C{imap} processes linger until their client
    is gone).

    @return: the processes still alive after C{timeout} (none normally).
    """
    log = (runDir or PEER_MAIL_ROOT.parent / "log") / "peers.log"
    _runScript(peersDir / "stop.sh", log, timeout=120)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = peerPids()
        if not left:
            return []
        time.sleep(0.2)
    return peerPids()
