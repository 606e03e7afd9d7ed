"""
A daemon run as a subprocess for tests and benchmarks: its log file, and
stopping it politely, then firmly.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Optional


class Daemon:
    """
    @ivar logFile: where the daemon's output goes (read by L{log}).
    @ivar process: the running process, or L{None}.
    @ivar stopTimeout: seconds between SIGTERM and SIGKILL.
    """

    stopTimeout = 10.0

    def __init__(self, logFile: Path) -> None:
        self.logFile = logFile
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.logHandle: Optional[IO[bytes]] = None

    def openLog(self) -> IO[bytes]:
        """
        The log file opened for the process's output (closed by L{stop}).
        """
        self.logHandle = open(self.logFile, "ab")
        return self.logHandle

    def log(self) -> str:
        try:
            return self.logFile.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stopTimeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.logHandle is not None:
            self.logHandle.close()
            self.logHandle = None
