"""
C{mailsrv sieve check} and C{mailsrv sieve test}, through the command's
entry point.
"""

from __future__ import annotations

from pathlib import Path

from tests.test_cli import Env


def install(env: Env, account: str, text: str) -> Path:
    local, _, domain = account.partition("@")
    home = env.root / "data" / "mail" / domain / local / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".dovecot.sieve").write_text(text)
    return home / ".dovecot.sieve"


def test_check_every_account(tmp_path: Path) -> None:
    """
    Without arguments every account's active script is compiled; one that
    does not compile is reported with its line and makes the exit code 1.
    """
    env = Env(tmp_path)
    good = install(env, "alice@example.test", 'require "fileinto";\nfileinto "Lists";\n')
    bad = install(env, "bob@example.test", 'require "fileinto";\nif true {\n  fileinto "x"\n}\n')
    run = env.run("sieve", "check")
    assert run.code == 1
    assert f"ok    {good} (alice@example.test)" in run.out
    assert f"error {bad} (bob@example.test): line 4: " in run.out
    bad.write_text("keep;\n")
    assert env.run("sieve", "check").code == 0


def test_check_file_and_account(tmp_path: Path) -> None:
    env = Env(tmp_path)
    script = tmp_path / "draft.sieve"
    script.write_text('require "reject";\nreject "no";\n')
    run = env.run("sieve", "check", str(script))
    assert run.code == 1 and "unsupported extension" in run.out
    install(env, "alice@example.test", "stop;\n")
    assert env.run("sieve", "check", "alice@example.test").code == 0
    missing = env.run("sieve", "check", "nobody@example.test")
    assert missing.code == 1 and "No such file" in missing.out


def test_test_prints_actions(tmp_path: Path) -> None:
    """
    C{sieve test} shows what the script would do with a message, vacation
    verdict included, without delivering anything.
    """
    env = Env(tmp_path)
    install(
        env,
        "alice@example.test",
        'require ["fileinto", "mailbox", "imap4flags", "vacation"];\n'
        'if header :contains "subject" "invoice" { fileinto :create :flags "\\\\Seen" "Invoices"; }\n'
        'vacation :days 3 :subject "Away" "Back soon.";\n',
    )
    message = tmp_path / "msg.eml"
    message.write_text("From: bob@remote.test\nTo: alice@example.test\nSubject: invoice 12\n\nPay.\n")
    run = env.run("sieve", "test", "alice@example.test", str(message), "--from", "bob@remote.test")
    assert run.code == 0, run.err
    assert "fileinto 'Invoices' :create with flags \\Seen" in run.out
    assert "vacation subject 'Away', at most once per 3 days" in run.out
    assert "the reply goes out" in run.out
    assert "keep (INBOX)" not in run.out
    assert not (env.root / "data" / "mail" / "example.test" / "alice" / ".Invoices").exists()
    listed = tmp_path / "list.eml"
    listed.write_text("From: news@remote.test\nTo: alice@example.test\nList-Id: <n.remote.test>\nSubject: hi\n\nx\n")
    run = env.run("sieve", "test", "alice@example.test", str(listed))
    assert "keep (INBOX)" in run.out and "the reply is not sent: " in run.out
