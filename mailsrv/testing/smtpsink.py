"""
A small recording SMTP server on loopback, for tests of outbound delivery:
it runs in a thread of the test process, answers each recipient as a
test function decides, and records every transaction byte for byte.
"""

from __future__ import annotations

import dataclasses
import socket
import socketserver
import ssl
import threading
from typing import Callable, Optional

# (recipient, how many times it was offered before) -> (code, text)
RcptPolicy = Callable[[str, int], tuple[int, str]]


@dataclasses.dataclass
class Transaction:
    mailFrom: str
    mailParams: str
    recipients: list[str]
    data: bytes
    tls: bool
    helo: str
    authenticatedAs: Optional[str]


class SMTPSink:
    """
    @ivar transactions: completed transactions (message data un-stuffed,
        exactly as sent otherwise).
    @ivar connections: how many connections were accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        rcptPolicy: Optional[RcptPolicy] = None,
        tls: Optional[ssl.SSLContext] = None,
        pipelining: bool = True,
        port: int = 0,
    ) -> None:
        self.host = host
        self.rcptPolicy = rcptPolicy or (lambda rcpt, seen: (250, "2.1.5 Ok"))
        self.tls = tls
        self.pipelining = pipelining
        self.transactions: list[Transaction] = []
        self.connections = 0
        self.offered: dict[str, int] = {}
        self.lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                sink._session(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "SMTPSink":
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def _session(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
        sock.settimeout(30)
        f = sock.makefile("rb")
        tlsOn = False
        helo = ""
        auth: Optional[str] = None

        def send(text: str) -> None:
            sock.sendall(text.encode() + b"\r\n")

        send("220 sink.test ESMTP")
        mailFrom, params, rcpts = None, "", []
        while True:
            line = f.readline()
            if not line:
                return
            command = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = command[:4].upper()
            if verb == "EHLO":
                helo = command[5:]
                caps = ["sink.test", "SIZE 100000000", "8BITMIME", "SMTPUTF8", "AUTH PLAIN"]
                if self.pipelining:
                    caps.append("PIPELINING")
                if self.tls is not None and not tlsOn:
                    caps.append("STARTTLS")
                for i, cap in enumerate(caps):
                    send(f"250{'-' if i < len(caps) - 1 else ' '}{cap}")
            elif verb == "STAR" and self.tls is not None and not tlsOn:
                send("220 2.0.0 go ahead")
                sock = self.tls.wrap_socket(sock, server_side=True)
                f = sock.makefile("rb")
                tlsOn = True
            elif verb == "AUTH":
                import base64

                parts = base64.b64decode(command.split()[2]).split(b"\0")
                auth = parts[1].decode()
                send("235 2.7.0 ok")
            elif verb == "MAIL":
                addr, _, params = command[10:].partition(" ")
                mailFrom, rcpts = addr.strip("<>"), []
                send("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpt = command[8:].strip().strip("<>")
                with self.lock:
                    seen = self.offered.get(rcpt, 0)
                    self.offered[rcpt] = seen + 1
                code, text = self.rcptPolicy(rcpt, seen)
                if code == 250:
                    rcpts.append(rcpt)
                send(f"{code} {text}")
            elif verb == "DATA":
                if not rcpts:
                    send("554 5.5.1 no valid recipients")
                    continue
                send("354 go")
                data = bytearray()
                while True:
                    chunk = f.readline()
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    data += chunk[1:] if chunk.startswith(b".") else chunk
                with self.lock:
                    self.transactions.append(
                        Transaction(mailFrom or "", params, rcpts, bytes(data), tlsOn, helo, auth)
                    )
                send("250 2.0.0 Ok: stored")
                mailFrom, rcpts = None, []
            elif verb == "QUIT":
                send("221 2.0.0 Bye")
                return
            elif verb == "RSET":
                mailFrom, rcpts = None, []
                send("250 2.0.0 Ok")
            else:
                send("502 5.5.2 unknown")
