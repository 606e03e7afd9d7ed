# -*- test-case-name: tests.filters.test_rspamd -*-
"""
A real Rspamd (Debian C{rspamd}) for tests, on a free loopback port, with
a minimal configuration that works offline.

None of Rspamd's stock rules or modules are loaded (C{filters = ""}, our
own Lua file instead of C{rules/rspamd.lua}): no Redis, no fuzzy storage,
no RBL, no network.  Its resolver points at a loopback port nothing
listens on, so even a stray lookup stays on this machine, and its TLD list
is a two-line file (the full list takes twenty seconds to compile).

The Lua rules make each outcome reachable on purpose, by a word in the
Subject:

 - C{MAILSRV-TEST-REJECT}: score 20, action C{reject};
 - C{MAILSRV-TEST-SUBJECT}: score 9, action C{rewrite subject};
 - C{MAILSRV-TEST-JUNK}: score 7, action C{add header};
 - C{MAILSRV-TEST-SOFT}: a pre-result C{soft reject};

and the symbol C{MAILSRV_TEST_ENVELOPE} (score 0) echoes, as its options,
what Rspamd understood of the envelope: client IP, HELO, MAIL FROM,
recipients and the authenticated user.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from mailsrv.testing.process import Daemon
from mailsrv.testing.server import freePort

RULES = r"""
local function subject_has(task, word)
  local subject = task:get_subject() or ''
  return subject:find(word, 1, true) ~= nil
end

for word, score in pairs({REJECT = 20.0, SUBJECT = 9.0, JUNK = 7.0}) do
  rspamd_config:register_symbol({
    name = 'MAILSRV_TEST_' .. word,
    score = score,
    callback = function(task)
      return subject_has(task, 'MAILSRV-TEST-' .. word)
    end,
  })
end

rspamd_config:register_symbol({
  name = 'MAILSRV_TEST_SOFT',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    if subject_has(task, 'MAILSRV-TEST-SOFT') then
      task:set_pre_result('soft reject', 'Try again later (test)', 'mailsrv')
    end
  end,
})

rspamd_config:register_symbol({
  name = 'MAILSRV_TEST_ENVELOPE',
  score = 0.0,
  callback = function(task)
    local opts = {}
    local ip = task:get_from_ip()
    table.insert(opts, 'ip=' .. (ip and ip:is_valid() and ip:to_string() or ''))
    table.insert(opts, 'helo=' .. (task:get_helo() or ''))
    local from = task:get_from('smtp')
    table.insert(opts, 'from=' .. ((from and from[1] and from[1].addr) or ''))
    for _, r in ipairs(task:get_recipients('smtp') or {}) do
      table.insert(opts, 'rcpt=' .. (r.addr or ''))
    end
    table.insert(opts, 'user=' .. (task:get_user() or ''))
    table.insert(opts, 'queue=' .. (task:get_queue_id() or ''))
    task:insert_result('MAILSRV_TEST_ENVELOPE', 1.0, opts)
  end,
})
"""


def rspamdBinary() -> Optional[str]:
    return shutil.which("rspamd") or shutil.which("rspamd", path="/usr/bin:/usr/sbin:/usr/local/bin")


class RedisProcess(Daemon):
    """
    A Redis server (Debian C{redis-server}) on a free loopback port, in
    memory only: the store of Rspamd's Bayes classifier.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        super().__init__(workdir / "redis.log")

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not installed (Debian package redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = freePort()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=self.openLog(),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.05)


#: The controller password the learning setup uses (not Rspamd's default
#: "q1", which its controller refuses for remote access).
LEARN_PASSWORD = "mailsrv-test-learn"


class RspamdProcess(Daemon):
    stopTimeout = 15.0

    """
    Rspamd's normal worker in the foreground, files under C{workdir}; with
    C{learning}, also its controller and a Bayes classifier over a Redis of
    its own (what C{[rspamd] learn} talks to).

    @ivar port: its loopback HTTP port, once started.
    @ivar controllerPort: the controller's port (with C{learning}).
    """

    def __init__(self, workdir: Path, learning: bool = False) -> None:
        self.workdir = workdir
        self.port = 0
        self.learning = learning
        self.controllerPort = 0
        self.redis = RedisProcess(workdir / "redis") if learning else None
        super().__init__(workdir / "rspamd.log")

    @property
    def controllerUrl(self) -> str:
        return f"http://127.0.0.1:{self.controllerPort}"

    def learned(self) -> int:
        """
        How many messages the Bayes classifier has learnt (controller
        C{/stat}).
        """
        import json

        conn = http.client.HTTPConnection("127.0.0.1", self.controllerPort, timeout=5)
        try:
            conn.request("GET", "/stat", headers={"Password": LEARN_PASSWORD})
            return int(json.loads(conn.getresponse().read()).get("learned", 0))
        finally:
            conn.close()

    def _learningConfig(self) -> str:
        assert self.redis is not None
        self.redis.start()
        self.controllerPort = freePort()
        hashed = subprocess.run(
            ["rspamadm", "pw", "-p", LEARN_PASSWORD], capture_output=True, text=True, check=True
        ).stdout.strip().splitlines()[-1]
        servers = f"127.0.0.1:{self.redis.port}"
        return (
            f'redis {{ servers = "{servers}"; }}\n'
            'classifier "bayes" {\n'
            f'  backend = "redis"; servers = "{servers}"; min_learns = 0; min_tokens = 1;\n'
            '  statfile { symbol = "BAYES_HAM"; spam = false; }\n'
            '  statfile { symbol = "BAYES_SPAM"; spam = true; }\n'
            "}\n"
            f'worker "controller" {{ bind_socket = "127.0.0.1:{self.controllerPort}"; count = 1; '
            f'password = "{hashed}"; enable_password = "{hashed}"; secure_ip = []; }}\n'
        )

    def stop(self) -> None:
        super().stop()
        if self.redis is not None:
            self.redis.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        binary = rspamdBinary()
        if binary is None:
            raise FileNotFoundError("rspamd not installed (Debian package rspamd)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rules.lua").write_text(RULES)
        (self.workdir / "tld.dat").write_text("test\nexample\n")
        self.port = freePort()
        config = self.workdir / "rspamd.conf"
        config.write_text(
            "options {\n"
            f'  pidfile = "{self.workdir}/rspamd.pid";\n'
            '  dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 0; }\n'
            '  filters = "";\n'
            f'  url_tld = "{self.workdir}/tld.dat";\n'
            "  disable_hyperscan = true;\n"
            f'  hs_cache_dir = "{self.workdir}";\n'
            "}\n"
            'logging { type = "console"; level = "info"; }\n'
            f'lua = "{self.workdir}/rules.lua";\n'
            "actions { reject = 15; rewrite_subject = 8; add_header = 6; greylist = 4; }\n"
            f'worker "normal" {{ bind_socket = "127.0.0.1:{self.port}"; count = 1; }}\n'
            + (self._learningConfig() if self.learning else "")
        )
        output = self.openLog()
        self.process = subprocess.Popen(
            [
                binary,
                "--no-fork",
                "--insecure",
                "--config",
                str(config),
                "--var",
                f"DBDIR={self.workdir}",
                "--var",
                f"RUNDIR={self.workdir}",
                "--var",
                f"LOGDIR={self.workdir}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.process.returncode}:\n{self.log()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rspamd did not start:\n{self.log()}")
            time.sleep(0.1)
