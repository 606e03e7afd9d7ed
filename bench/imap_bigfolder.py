"""
SELECT on a very large folder: C{python -m bench.imap_bigfolder [--messages
N]} (default 100,000) writes N tiny messages straight into an INBOX's
C{cur/} (sizes in the names, as Dovecot and mailsrv name files; no
uidlist, as after a migration), starts a mailsrv of its own on loopback and
times, over implicit TLS (SELECT after LOGIN, the login not counted):

 - C{select_first_s}: SELECT when nothing is indexed yet (UIDs given,
   C{dovecot-uidlist} and the MODSEQ log written, one C{stat} per file);
 - C{select_restart_s}: the same after a restart (the uidlist and MODSEQ
   log read back, one C{stat} per file, no message file opened);
 - C{select_warm_s}: median of further SELECTs (new sessions) in the same process
   (the folder snapshot reused while the directories are unchanged);
 - C{fetch_flags_uid_s}: C{FETCH 1:* (FLAGS UID)};
 - C{status_s}: C{STATUS INBOX (MESSAGES UNSEEN UIDNEXT)} from another
   session.

Prints JSON.  That no message file is read is asserted by
C{tests/integration/test_imap_bigfolder.py}; the times are only reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.imap_bench import IMAPConnection

MESSAGES = 100_000
PASSWORD = "bench-password"


def generateTinyMaildir(maildir: Path, count: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    cur = os.open(maildir / "cur", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            data = b"Subject: m%d\r\n\r\nx\r\n" % (i,)
            name = f"{1_700_000_000 + i}.M{i}P1.big,S={len(data)},W={len(data)}:2,{'S' if i % 3 else ''}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=cur)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    finally:
        os.close(cur)


def _loginSelect(host: str, port: int, user: str) -> float:
    """
    The time SELECT INBOX takes after LOGIN (the login itself is left out:
    with the default ARGON2ID hashes it costs 0.1-0.3 s of CPU).
    """
    conn = IMAPConnection(host, port)
    conn.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))
    started = time.perf_counter()
    conn.command(b"SELECT INBOX")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def run(count: int = MESSAGES, rounds: int = 3) -> dict[str, Any]:
    from mailsrv.testing.server import RunningServer

    result: dict[str, Any] = {"messages": count}
    with tempfile.TemporaryDirectory(prefix="imap-bigfolder-") as tmp:
        server = RunningServer(Path(tmp), endpoints=("imaps",))
        user = "big@example.test"
        server.addUser(user, PASSWORD)
        started = time.perf_counter()
        generateTinyMaildir(server.maildir(user), count)
        result["generate_s"] = round(time.perf_counter() - started, 2)
        host, port = "127.0.0.1", server.ports["imaps"]
        server.start()
        try:
            result["select_first_s"] = round(_loginSelect(host, port, user), 3)
            server.stop()
            server.start()
            result["select_restart_s"] = round(_loginSelect(host, port, user), 3)
            warm = [_loginSelect(host, port, user) for _ in range(rounds)]
            result["select_warm_s"] = round(statistics.median(warm), 3)
            conn = IMAPConnection(host, port)
            conn.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))
            conn.command(b"SELECT INBOX")
            started = time.perf_counter()
            _, responses = conn.command(b"FETCH 1:* (FLAGS UID)")
            result["fetch_flags_uid_s"] = round(time.perf_counter() - started, 3)
            result["fetch_responses"] = responses
            other = IMAPConnection(host, port)
            other.command(b'LOGIN "%s" "%s"' % (user.encode(), PASSWORD.encode()))
            started = time.perf_counter()
            other.command(b"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
            result["status_s"] = round(time.perf_counter() - started, 3)
            other.close()
            conn.close()
        finally:
            server.stop()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    return result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    count = int(sys.argv[sys.argv.index("--messages") + 1]) if "--messages" in sys.argv else MESSAGES
    print(json.dumps(run(count), indent=2))


if __name__ == "__main__":
    main()
