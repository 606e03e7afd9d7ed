# -*- test-case-name: tests.test_cli -*-
"""
Tests for the C{mailsrv} administration command, L{mailsrv.cli}.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

import mailsrv
from mailsrv import cli
from mailsrv.auth.directory import FileDirectory
from mailsrv.auth.files import ACCOUNTS_FILE, VIRTUAL_FILE, readAccounts
from mailsrv.auth.passwords import verifyPassword

REPO = Path(mailsrv.__file__).resolve().parents[1]


class Run:
    """
    The outcome of one command: exit code and what it printed.
    """

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def env(tmp_path: Path) -> "Env":
    return Env(tmp_path)


class Env:
    """
    A temporary installation: config file, config dir, data dir.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.confDir = root / "conf"
        self.configFile = root / "mailsrv.toml"
        self.configFile.write_text(
            "[server]\n"
            'hostname = "mail.example.test"\n'
            'domains = ["example.test"]\n'
            f'data_dir = "{root}/data"\n'
            f'config_dir = "{self.confDir}"\n'
        )

    def run(self, *argv: str, stdin: Optional[io.StringIO] = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(
            ["--config", str(self.configFile), *argv],
            stdin=io.StringIO("") if stdin is None else stdin,
            stdout=out,
            stderr=err,
        )
        return Run(code, out.getvalue(), err.getvalue())

    def accounts(self) -> dict[str, str]:
        return readAccounts(self.confDir).accounts()


def test_emailAddWithArgument(env: Env) -> None:
    """
    email add stores an ARGON2ID hash of the given password (never the
    password itself) in a 0600 accounts file, under the canonical address.
    """
    result = env.run("email", "add", "Alice@Example.test", "s3cret")
    assert result.code == 0, result.err
    accounts = env.accounts()
    assert list(accounts) == ["alice@example.test"]
    assert accounts["alice@example.test"].startswith("{ARGON2ID}$argon2id$")
    assert verifyPassword(b"s3cret", accounts["alice@example.test"])
    path = env.confDir / ACCOUNTS_FILE
    assert "s3cret" not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert result.err == ""


def test_emailAddPasswordFromStdin(env: Env) -> None:
    """
    Without a password argument and without a terminal, the first line of
    standard input is the password (line end stripped).
    """
    result = env.run("email", "add", "a@example.test", stdin=io.StringIO("piped pw\r\nignored\n"))
    assert result.code == 0, result.err
    assert verifyPassword(b"piped pw", env.accounts()["a@example.test"])


def test_emailAddPrompt(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    On a terminal the password is asked twice; a mismatch is a user error
    and changes nothing.
    """
    answers = iter(["one", "two", "same", "same"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": next(answers))
    bad = env.run("email", "add", "a@example.test", stdin=TTY())
    assert bad.code == 1
    assert "do not match" in bad.err
    assert env.accounts() == {}
    good = env.run("email", "add", "a@example.test", stdin=TTY())
    assert good.code == 0, good.err
    assert verifyPassword(b"same", env.accounts()["a@example.test"])


def test_emptyPasswordRefused(env: Env) -> None:
    """
    An empty password is refused.
    """
    result = env.run("email", "add", "a@example.test", stdin=io.StringIO("\n"))
    assert result.code == 1
    assert "empty" in result.err
    assert env.accounts() == {}


def test_emailAddDuplicate(env: Env) -> None:
    """
    Adding an existing account (in any case) fails, points at email update,
    and keeps the old password.
    """
    assert env.run("email", "add", "a@example.test", "one").code == 0
    result = env.run("email", "add", "A@EXAMPLE.TEST", "two")
    assert result.code == 1
    assert "already exists, use email update" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert verifyPassword(b"one", env.accounts()["a@example.test"])


def test_emailUpdate(env: Env) -> None:
    """
    email update replaces the hash of an existing account; for an unknown
    account it is a user error.
    """
    env.run("email", "add", "a@example.test", "one")
    assert env.run("email", "update", "a@example.test", "two").code == 0
    stored = env.accounts()["a@example.test"]
    assert verifyPassword(b"two", stored)
    assert not verifyPassword(b"one", stored)
    missing = env.run("email", "update", "b@example.test", "x")
    assert missing.code == 1
    assert "no account b@example.test" in missing.err


def test_emailDelWarnsAboutAliases(env: Env) -> None:
    """
    email del removes the account, leaves aliases alone and names the
    aliases still pointing at it; deleting an unknown account fails.
    """
    env.run("email", "add", "a@example.test", "pw")
    env.run("email", "add", "b@example.test", "pw")
    env.run("alias", "add", "info@example.test", "a@example.test")
    env.run("alias", "add", "other@example.test", "b@example.test")
    result = env.run("email", "del", "a@example.test")
    assert result.code == 0, result.err
    assert list(env.accounts()) == ["b@example.test"]
    assert "info@example.test" in result.err
    assert "other@example.test" not in result.err
    assert "info@example.test a@example.test" in env.run("alias", "list").out
    again = env.run("email", "del", "a@example.test")
    assert again.code == 1
    assert "no account" in again.err


def test_emailList(env: Env) -> None:
    """
    email list prints one account per line, sorted.
    """
    for address in ("zed@example.test", "amy@example.test", "bob@other.test"):
        env.run("email", "add", address, "pw")
    assert env.run("email", "list").out == "amy@example.test\nbob@other.test\nzed@example.test\n"


def test_newDomainNote(env: Env) -> None:
    """
    An account in a domain that is neither configured nor already in use is
    allowed, with a note that it becomes local; the note is not repeated.
    """
    first = env.run("email", "add", "a@new.test", "pw")
    assert first.code == 0
    assert "domain new.test is new: it will be treated as local" in first.err
    second = env.run("email", "add", "b@new.test", "pw")
    assert "is new" not in second.err
    configured = env.run("email", "add", "c@example.test", "pw")
    assert "is new" not in configured.err


@pytest.mark.parametrize(
    "argv",
    [
        ("email", "add", "no-at-sign", "pw"),
        ("email", "add", "a b@example.test", "pw"),
        ("email", "add", "a|b@example.test", "pw"),
        ("email", "add", "@example.test", "pw"),
        ("email", "add", "a@bad_domain", "pw"),
        ("alias", "add", "x@example.test", "a,b@example.test"),
        ("alias", "add", "x y@example.test", "a@example.test"),
    ],
)
def test_badAddresses(env: Env, argv: tuple[str, ...]) -> None:
    """
    Invalid addresses are refused with exit code 1, one line on stderr, and
    no file is written.
    """
    result = env.run(*argv)
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert "invalid" in result.err
    assert not (env.confDir / ACCOUNTS_FILE).exists()
    assert not (env.confDir / VIRTUAL_FILE).exists()


def test_aliases(env: Env) -> None:
    """
    alias add accumulates targets (refusing a duplicate), @domain works as
    a catch-all, alias del removes one target or the whole alias, and alias
    list prints 'alias target,target' sorted.
    """
    assert env.run("alias", "add", "info@example.test", "a@example.test").code == 0
    assert env.run("alias", "add", "info@example.test", "b@remote.test").code == 0
    assert env.run("alias", "add", "@example.test", "a@example.test").code == 0
    dup = env.run("alias", "add", "info@example.test", "A@example.test")
    assert dup.code == 1
    assert env.run("alias", "list").out == (
        "@example.test a@example.test\ninfo@example.test a@example.test,b@remote.test\n"
    )
    assert env.run("alias", "del", "info@example.test", "a@example.test").code == 0
    assert env.run("alias", "list").out == "@example.test a@example.test\ninfo@example.test b@remote.test\n"
    assert env.run("alias", "del", "info@example.test", "nobody@example.test").code == 1
    assert env.run("alias", "del", "@example.test").code == 0
    assert env.run("alias", "del", "@example.test").code == 1
    assert env.run("alias", "list").out == "info@example.test b@remote.test\n"


def test_aliasShadowingAccountWarns(env: Env) -> None:
    """
    Creating an alias named like an account warns that the account no
    longer gets that mail (Postfix semantics), unless the alias lists it.
    """
    env.run("email", "add", "a@example.test", "pw")
    shadow = env.run("alias", "add", "a@example.test", "fwd@remote.test")
    assert shadow.code == 0
    assert "also an account" in shadow.err
    env.run("email", "add", "b@example.test", "pw")
    keep = env.run("alias", "add", "b@example.test", "b@example.test")
    assert "also an account" not in keep.err


def test_serverSeesChange(env: Env) -> None:
    """
    A FileDirectory reading the same config dir sees an account added by
    the command once its reload interval has passed, without restarting.
    """
    now = [0.0]
    env.confDir.mkdir()
    directory = FileDirectory(env.confDir, ["example.test"], clock=lambda: now[0])
    assert directory.canonicalAccount("a@example.test") is None
    env.run("email", "add", "a@example.test", "pw")
    env.run("alias", "add", "sales@example.test", "a@example.test")
    now[0] += 1.5
    assert directory.canonicalAccount("a@example.test") == "a@example.test"
    assert directory.expandRecipient("sales@example.test") == ["a@example.test"]
    assert verifyPassword(b"pw", directory.passwordHash("a@example.test") or "")


def test_configError(env: Env) -> None:
    """
    An invalid config file exits with 2 and the loader's one-line message.
    """
    env.configFile.write_text("[server]\nno_such_key = 1\n")
    result = env.run("email", "list")
    assert result.code == 2
    assert "no_such_key" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_missingConfigFile(tmp_path: Path) -> None:
    """
    A --config that does not exist is a config error (exit 2).
    """
    err = io.StringIO()
    code = cli.main(["--config", str(tmp_path / "nope.toml"), "email", "list"], stderr=err, stdout=io.StringIO())
    assert code == 2
    assert "nope.toml" in err.getvalue()


def test_defaultConfigPath(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without --config, the default path is used when it exists.
    """
    monkeypatch.setattr(cli, "DEFAULT_CONFIG", env.configFile)
    out = io.StringIO()
    code = cli.main(["email", "add", "a@example.test", "pw"], stdin=io.StringIO(), stdout=out, stderr=io.StringIO())
    assert code == 0
    assert list(env.accounts()) == ["a@example.test"]


def test_usageErrors(env: Env) -> None:
    """
    A missing or unknown subcommand is a user error (exit 1), --help is not.
    """
    assert env.run().code == 1
    assert env.run("bogus").code == 1
    assert env.run("email").code == 1
    assert env.run("alias", "add", "x@example.test").code == 1
    assert cli.main(["--help"], stdout=io.StringIO(), stderr=io.StringIO()) == 0


def _subprocessEnv() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    return environ


def _runModule(env: Env, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailsrv.cli", "--config", str(env.configFile), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=_subprocessEnv(),
        timeout=60,
    )


def test_subprocess(env: Env) -> None:
    """
    Run as a program (python -m mailsrv.cli): the password is read from a
    pipe, the exit codes reach the shell, errors go to stderr.
    """
    added = _runModule(env, "email", "add", "a@example.test", stdin="from-pipe\n")
    assert added.returncode == 0, added.stderr
    listed = _runModule(env, "email", "list")
    assert (listed.returncode, listed.stdout) == (0, "a@example.test\n")
    dup = _runModule(env, "email", "add", "a@example.test", "x")
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    assert verifyPassword(b"from-pipe", env.accounts()["a@example.test"])


def test_concurrentRunsDoNotLoseUpdates(env: Env) -> None:
    """
    Several commands started at once each add their account: the lock
    serialises their read-modify-write of the accounts file.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mailsrv.cli", "--config", str(env.configFile),
             "email", "add", f"user{i}@example.test", "pw"],
            env=_subprocessEnv(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(5)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert sorted(env.accounts()) == [f"user{i}@example.test" for i in range(5)]
