"""
An authoritative twisted.names server for test zones, on 127.0.0.1 only, run
as a subprocess (C{python -m tests.ops.dnszone ZONES.json} prints its port)
so that C{mailsrv doctor} subprocesses can query it through
C{[dns] nameservers}.

Zones are plain data: C{{"good.test": {"good.test": {"MX": [[10,
"mail.good.test"]], "TXT": ["v=spf1 mx -all"]}}}}: apex -> owner -> type ->
values.  TXT values longer than 255 octets are split into strings.
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

REPO = str(Path(__file__).resolve().parents[2])


class ZoneAuthority(authority.FileAuthority):
    def __init__(self, apex: str, owners: dict[str, dict[str, list[Any]]]) -> None:
        authority.FileAuthority.__init__(self, None)  # type: ignore[arg-type]
        apexBytes = apex.encode("ascii")
        self.soa = (apexBytes, dns.Record_SOA(mname=b"ns." + apexBytes, rname=b"h." + apexBytes, serial=1, minimum=60))
        self.records = {apexBytes.lower(): [self.soa[1]]}
        for owner, types in owners.items():
            out = self.records.setdefault(owner.encode("ascii").lower(), [])
            for rtype, values in types.items():
                out.extend(record(rtype, v) for v in values)

    def loadFile(self, filename: Any) -> None:
        pass


def record(rtype: str, value: Any) -> Any:
    if rtype == "MX":
        return dns.Record_MX(int(value[0]), value[1].encode("ascii"), ttl=60)
    if rtype == "A":
        return dns.Record_A(value, ttl=60)
    if rtype == "AAAA":
        return dns.Record_AAAA(value, ttl=60)
    if rtype == "PTR":
        return dns.Record_PTR(value.encode("ascii"), ttl=60)
    if rtype == "CNAME":
        return dns.Record_CNAME(value.encode("ascii"), ttl=60)
    if rtype == "TXT":
        data = value.encode("utf-8")
        return dns.Record_TXT(*[data[i : i + 255] for i in range(0, len(data), 255)], ttl=60)
    raise ValueError(rtype)


class ZoneServer:
    """
    The zone server subprocess.
    """

    def __init__(self, zones: dict[str, Any], workdir: Path) -> None:
        self.zoneFile = workdir / "zones.json"
        self.zoneFile.write_text(json.dumps(zones))
        self.process: Optional[subprocess.Popen[str]] = None
        self.port = 0

    def start(self) -> "ZoneServer":
        env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.dnszone", str(self.zoneFile)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"zone server did not start: {line!r}")
        self.port = int(line)
        return self

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def main(path: str) -> None:
    from twisted.internet import reactor

    zones = json.loads(Path(path).read_text())
    factory = server.DNSServerFactory(authorities=[ZoneAuthority(apex, owners) for apex, owners in zones.items()])
    factory.noisy = False
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        except Exception:
            continue
        try:
            reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")  # type: ignore[attr-defined]
        except Exception:
            tcp.stopListening()
            continue
        print(port, flush=True)
        reactor.run()  # type: ignore[attr-defined]
        return
    raise SystemExit("no free port")


if __name__ == "__main__":
    main(sys.argv[1])
