"""
Starting the server: the twistd plugin, configuration errors, defaults.
"""

from __future__ import annotations

import os
import socket
import subprocess
import venv
from pathlib import Path

import pytest

from mailsrv.testing.server import TWISTD, RunningServer, freePort

REPO = Path(__file__).resolve().parents[2]


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TWISTD, "--nodaemon", "--pidfile=", "mailsrv", *args],
        capture_output=True, text=True, timeout=60, cwd=str(cwd),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.parametrize(
    "toml,key",
    [
        ('[server]\nhostname = "x.test"\nbogus = 1\n', "server.bogus"),
        ('[endpoints.imap]\nlisten = ["127.0.0.1:{port}"]\ntls = "sometimes"\n', "endpoints.imap.tls"),
        ('[endpoints.smtp]\nlisten = ["127.0.0.1:{port}"]\n[limits]\nmessage_size = -1\n', "limits.message_size"),
        ('[endpoints.smtp]\nlisten = ["127.0.0.1:{port}"]\n[tls]\ncert = "/x.pem"\n', "tls.key"),
        ('[endpoints.smtp]\nlisten = ["127.0.0.1:{port}", "127.0.0.1:{port}"]\n', "endpoints.smtp.listen"),
        ("this is [not toml", "not valid TOML"),
    ],
)
def test_bad_config_exits_with_one_line(tmp_path: Path, toml: str, key: str) -> None:
    """
    A bad config exits non-zero with one line naming the file and key, and
    binds nothing.
    """
    port = freePort()
    config = tmp_path / "bad.toml"
    config.write_text(toml.replace("{port}", str(port)))
    result = twistd("--config", str(config), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and key in lines[0], lines[0]
    assert result.stdout.strip() == ""
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free: nothing was bound


def test_port_in_use_fails_start(tmp_path: Path) -> None:
    """
    If a port cannot be bound the server does not run half-started.
    """
    srv = RunningServer(tmp_path, endpoints=("smtp", "imaps"))
    blocker = socket.socket()
    # Bound but not listening: the port is taken, and a connection attempt
    # is refused, so start() can only end with the process exiting.
    blocker.bind(("127.0.0.1", srv.ports["imaps"]))
    try:
        with pytest.raises(RuntimeError, match="exited"):
            srv.start(timeout=20)
    finally:
        blocker.close()
        srv.stop()
    assert f"mailsrv: cannot listen on 127.0.0.1:{srv.ports['imaps']}" in srv.log(), srv.log()
    assert "Traceback" not in srv.log()


def test_self_signed_certificate_generated_and_reused(tmp_path: Path) -> None:
    """
    Without [tls] files a self-signed certificate is generated on the first
    start, with a warning, and the same one is used after a restart.
    """
    srv = RunningServer(tmp_path, endpoints=("imaps",))
    srv.start()
    srv.stop()
    cert = srv.dataDir / "tls" / "selfsigned-cert.pem"
    first = cert.read_bytes()
    assert "SELF-SIGNED" in srv.log()
    assert oct((srv.dataDir / "tls" / "selfsigned-key.pem").stat().st_mode & 0o777) == "0o600"
    srv.start()
    srv.stop()
    assert cert.read_bytes() == first


@pytest.mark.skipif(os.environ.get("MAILSRV_SKIP_INSTALL_TEST") == "1", reason="install test disabled")
def test_twistd_lists_plugin_after_pip_install(tmp_path: Path) -> None:
    """
    A normal (non-editable) `pip install .` into a fresh virtualenv ships the
    twistd plugin: `twistd --help` lists mailsrv, and the console script runs.
    """
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(REPO)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr
    helptext = subprocess.run(
        [str(env_dir / "bin" / "twistd"), "--help"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path)
    )
    assert "mailsrv" in helptext.stdout, helptext.stdout
    cli = subprocess.run(
        [str(env_dir / "bin" / "mailsrv"), "--help"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path)
    )
    assert cli.returncode == 0 and "email" in cli.stdout
