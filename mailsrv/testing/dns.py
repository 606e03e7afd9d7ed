# -*- test-case-name: tests.queue.test_mx -*-
"""
An authoritative DNS server for test zones, on loopback only.

In-process (L{DNSFixture}, for trial tests on any reactor) or as a
subprocess for integration tests (L{DNSProcess}: C{python -m
mailsrv.testing.dns ZONES.json} prints the port it serves on, UDP and TCP).

A zone is given as plain data: C{{"example.test": {"MX": [[10,
"mx1.example.test"]], "A": ["127.0.0.1"]}, "mx1.example.test": {"A":
["127.0.0.1"]}}}; the first name is the zone apex.  A null MX (RFC 7505) is
C{[0, ""]}.  Names are turned into bytes here, which twisted.names needs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from twisted.names import authority, dns, server

LOOPBACK = "127.0.0.1"

Zone = dict[str, dict[str, list[Any]]]


class MemoryAuthority(authority.FileAuthority):
    """
    A zone from a dict, answering authoritatively for its apex and every
    name below it.
    """

    def __init__(self, apex: str, records: Zone) -> None:
        authority.FileAuthority.__init__(self, None)  # type: ignore[arg-type]
        apexBytes = apex.encode("ascii")
        self.soa = (
            apexBytes,
            dns.Record_SOA(mname=b"ns." + apexBytes, rname=b"hostmaster." + apexBytes, serial=1, minimum=60),
        )
        self.records = {apexBytes.lower(): [self.soa[1]]}
        for name, types in records.items():
            owner = name.encode("ascii").lower()
            out = self.records.setdefault(owner, [])
            for rtype, values in types.items():
                for value in values:
                    out.append(_record(rtype, value))

    def loadFile(self, filename: Any) -> None:
        pass


def _record(rtype: str, value: Any) -> Any:
    if rtype == "MX":
        preference, host = value
        return dns.Record_MX(int(preference), host.encode("ascii"), ttl=60)
    if rtype == "A":
        return dns.Record_A(value, ttl=60)
    if rtype == "AAAA":
        return dns.Record_AAAA(value, ttl=60)
    if rtype == "TXT":
        return dns.Record_TXT(*(v.encode("utf-8") for v in (value if isinstance(value, list) else [value])), ttl=60)
    if rtype == "CNAME":
        return dns.Record_CNAME(value.encode("ascii"), ttl=60)
    raise ValueError(f"unsupported record type {rtype}")


def authoritiesFor(zones: dict[str, Zone]) -> list[MemoryAuthority]:
    return [MemoryAuthority(apex, records) for apex, records in zones.items()]


class DNSFixture:
    """
    Serve C{zones} ({apex: records}) on a free loopback port, UDP and TCP.

    @ivar port: the port number, once L{start} returned.
    """

    def __init__(self, reactor: Any, zones: dict[str, Zone]) -> None:
        self.reactor = reactor
        self.zones = zones
        self.port = 0
        self._listeners: list[Any] = []

    def start(self) -> int:
        factory = server.DNSServerFactory(authorities=authoritiesFor(self.zones))
        factory.noisy = False
        for _ in range(50):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
            probe.close()
            try:
                tcp = self.reactor.listenTCP(port, factory, interface=LOOPBACK)
            except Exception:
                continue
            try:
                udp = self.reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface=LOOPBACK)
            except Exception:
                tcp.stopListening()
                continue
            self._listeners = [tcp, udp]
            self.port = port
            return port
        raise RuntimeError("no free loopback port for the DNS fixture")

    def stop(self) -> Any:
        from twisted.internet import defer

        return defer.gatherResults([defer.maybeDeferred(l.stopListening) for l in self._listeners])


class DNSProcess:
    """
    The fixture in a subprocess, for tests that run mailsrv itself in a
    subprocess (C{[dns] nameservers = ["127.0.0.1:PORT"]}).
    """

    def __init__(self, zones: dict[str, Zone], workdir: Path) -> None:
        self.zoneFile = workdir / "zones.json"
        self.zoneFile.write_text(json.dumps(zones))
        self.process: Optional[subprocess.Popen[str]] = None
        self.port = 0

    def start(self) -> int:
        from mailsrv.testing.server import SOURCE_ROOT

        env = dict(os.environ)
        env["PYTHONPATH"] = SOURCE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailsrv.testing.dns", str(self.zoneFile)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"DNS fixture did not start: {line!r}")
        self.port = int(line)
        return self.port

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def main(argv: list[str]) -> None:
    from twisted.internet import reactor

    zones = json.loads(Path(argv[1]).read_text())
    fixture = DNSFixture(reactor, zones)
    port = fixture.start()
    print(port, flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
