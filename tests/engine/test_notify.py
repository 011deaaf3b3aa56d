"""Notices after an unattended run: their wording, when they are wanted, and their delivery to a real SMTP server on
loopback (aiosmtpd) and to a notification command."""

from __future__ import annotations

import json
import shlex
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mail import PASSWORD, Inbox, free_port, serve
from toolsync_tui.config import NotifySettings
from toolsync_tui.engine.run.pipeline import RunResult
from toolsync_tui.engine.unattended import notify
from toolsync_tui.engine.unattended.notify import Notice, notice_for, send, wanted

REPORT_TEXT = "users: userimport.csv\n\nline 2: created (create) jdoe\nline 3: failed (create) bad e-mail\n"


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_port(inbox: Inbox) -> Iterator[int]:
    with serve(inbox) as port:
        yield port


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1, which the client side is made to trust."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl program is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    request = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files]
    subprocess.run(request, check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by ssl.create_default_context() in notify
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def report(tmp_path: Path, name: str, text: str = REPORT_TEXT) -> Path:
    path = tmp_path / "reports" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def failed_run(tmp_path: Path) -> RunResult:
    return RunResult(
        operation="users",
        source=tmp_path / "inbox" / "userimport.csv",
        dry_run=False,
        counts={"created": 1, "failed": 1},
        rows=2,
        duration=0.4,
        report_path=report(tmp_path, "users_20250101-0200.txt"),
        table_path=tmp_path / "reports" / "users_20250101-0200.csv",
        archive_path=tmp_path / "archive" / "userimport_20250101-0200.csv",
        notes=["a stale lock from a crashed run was removed"],
    )


def good_run(tmp_path: Path) -> RunResult:
    return RunResult(
        operation="enrols",
        source=tmp_path / "inbox" / "enrols.csv",
        dry_run=False,
        counts={"created": 3},
        rows=3,
        duration=0.2,
        report_path=report(tmp_path, "enrols_20250101-0200.txt", "enrols report\n"),
    )


def mail_settings(port: int, **changes: Any) -> NotifySettings:
    options: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "sender": "toolsync@lms.example.org",
        "recipients": ["admin@example.org", "ops@example.org"],
    }
    return NotifySettings(**(options | changes))


# --- the notice ---------------------------------------------------------------------------------------------------


def test_a_notice_tells_what_each_run_did(tmp_path: Path) -> None:
    runs = [failed_run(tmp_path), good_run(tmp_path)]
    notice = notice_for(runs, "lms.example.org", ["groups: nothing to run, no groups.csv found"])
    assert notice.subject == "toolsync on lms.example.org: 2 operations, 1 row failed; 1 operation could not run"
    first, second, problems = notice.body.strip().split("\n\n")
    assert first.splitlines() == [
        f"users: {tmp_path / 'inbox' / 'userimport.csv'}",
        "  2 rows were processed in 0.4 s: 1 created, 1 failed",
        f"  report: {tmp_path / 'reports' / 'users_20250101-0200.txt'}",
        f"  table: {tmp_path / 'reports' / 'users_20250101-0200.csv'}",
        f"  archived: {tmp_path / 'archive' / 'userimport_20250101-0200.csv'}",
        "  note: a stale lock from a crashed run was removed",
    ]
    assert second.startswith("enrols: ")
    assert problems == "Could not run:\n  - groups: nothing to run, no groups.csv found"
    assert notice.attachments == (runs[0].report_path, runs[1].report_path)


def test_subjects(tmp_path: Path) -> None:
    assert notice_for([good_run(tmp_path)], "site").subject == "toolsync on site: 1 operation, all rows succeeded"
    details = RunResult("users", tmp_path / "u.csv", False, {"created": 2}, 2, 0.1, failed_details=3, cancelled=True)
    assert notice_for([details], "site").subject == "toolsync on site: 1 operation, 3 parts of rows failed, 1 cancelled"
    assert notice_for([], "site", ["a", "b"]).subject == "toolsync on site: 2 operations could not run"


def test_a_cancelled_run_is_told_as_the_run_screen_tells_it(tmp_path: Path) -> None:
    cancelled = RunResult("users", tmp_path / "u.csv", False, {"created": 2, "skipped": 8}, 10, 0.1, cancelled=True)
    [paragraph] = notice_for([cancelled], "site").body.strip().split("\n\n")
    assert paragraph.splitlines()[1:] == [
        "  2 of 10 rows were processed in 0.1 s: 2 created; cancelled, 8 not processed",
        "  Cancelled: 8 rows were not processed (counted as skipped). The file stays in the inbox.",
    ]


@pytest.mark.parametrize(
    ("when", "nothing", "success", "failure", "problem"),
    [
        ("never", False, False, False, False),
        ("failures", False, False, True, True),
        ("always", False, True, True, True),
    ],
)
def test_wanted(tmp_path: Path, when: str, nothing: bool, success: bool, failure: bool, problem: bool) -> None:
    settings = NotifySettings(when=when)
    assert wanted(settings, [], []) is nothing
    assert wanted(settings, [good_run(tmp_path)], []) is success
    assert wanted(settings, [good_run(tmp_path), failed_run(tmp_path)], []) is failure
    assert wanted(settings, [good_run(tmp_path)], ["users: the database is unreachable"]) is problem


# --- mail ---------------------------------------------------------------------------------------------------------


def test_mail_reaches_the_server_with_the_reports_attached(tmp_path: Path, inbox: Inbox, smtp_port: int) -> None:
    notice = notice_for([failed_run(tmp_path)], "lms.example.org")
    assert send(mail_settings(smtp_port), notice) == []
    [message] = inbox.messages
    assert message["From"] == "toolsync@lms.example.org"
    assert message["To"] == "admin@example.org, ops@example.org"
    assert inbox.recipients == [["admin@example.org", "ops@example.org"]]
    assert message["Subject"] == notice.subject
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content() == notice.body
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/plain"
    assert attachment.get_filename() == "users_20250101-0200.txt"
    assert attachment.get_content() == REPORT_TEXT


def test_large_or_missing_reports_are_named_instead(
    tmp_path: Path, inbox: Inbox, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "MAX_ATTACHMENT", 10)
    big, gone = report(tmp_path, "big.txt", "x" * 11), tmp_path / "reports" / "gone.txt"
    assert send(mail_settings(smtp_port), Notice("s", "body\n", (big, gone))) == []
    [message] = inbox.messages
    body = message.get_body(("plain",))
    assert body is not None
    assert f"Not attached (larger than 10 Bytes): {big}" in body.get_content()  # was "0 MB" (issue 21 item 12)
    assert f"Not attached (could not be read: No such file or directory): {gone}" in body.get_content()
    assert list(message.iter_attachments()) == []


def test_an_unreachable_server_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    port = free_port()
    problems = send(mail_settings(port), notice_for([failed_run(tmp_path)], "site"))
    assert problems == [
        f"mail to admin@example.org, ops@example.org through 127.0.0.1:{port} failed: Connection refused"
    ]


def test_no_recipients_is_a_problem() -> None:
    assert send(mail_settings(25, recipients=[]), Notice("s", "b")) == [
        "mail not sent: notify.recipients is empty (server 127.0.0.1:25)"
    ]


def test_login_after_starttls(inbox: Inbox, certificate: ssl.SSLContext) -> None:
    with serve(
        inbox, tls_context=certificate, require_starttls=True, authenticator=inbox.authenticate, auth_required=True
    ) as port:
        settings = mail_settings(port, smtp_security="starttls", smtp_user="toolsync")
        assert send(settings, Notice("s", "b\n"), {"TOOLSYNC_SMTP_PASSWORD": PASSWORD}) == []
        assert inbox.logins == ["toolsync"]
        assert len(inbox.messages) == 1
        wrong = send(settings, Notice("s", "b\n"), {"TOOLSYNC_SMTP_PASSWORD": "not-it"})
        assert len(wrong) == 1
        assert "failed: the server answered 535" in wrong[0]
        assert "not-it" not in wrong[0]
        missing = send(settings, Notice("s", "b\n"), {})
        assert missing == [
            "mail to admin@example.org, ops@example.org not sent: notify.smtp_user is set but its password "
            "variable TOOLSYNC_SMTP_PASSWORD is not set"
        ]


def test_implicit_tls(inbox: Inbox, certificate: ssl.SSLContext) -> None:
    with serve(inbox, ssl_context=certificate) as port:
        assert send(mail_settings(port, smtp_security="tls"), Notice("over tls", "b\n")) == []
        assert [m["Subject"] for m in inbox.messages] == ["over tls"]


def test_an_untrusted_certificate_is_a_problem(inbox: Inbox, certificate: ssl.SSLContext, tmp_path: Path) -> None:
    with serve(inbox, tls_context=certificate) as port:
        stranger = report(tmp_path, "empty.pem", "")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_FILE", str(stranger))
            [problem] = send(mail_settings(port, smtp_security="starttls"), Notice("s", "b\n"))
        assert "failed:" in problem
        assert "certificate verify failed" in problem
        assert inbox.messages == []


# --- command ------------------------------------------------------------------------------------------------------


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bin" / "notify-admins"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


RECORDER = """import json, os, sys
from pathlib import Path
saved = {"argv": sys.argv[1:], "stdin": sys.stdin.read(), "subject": os.environ.get("TOOLSYNC_SUBJECT")}
Path(sys.argv[0]).with_name("received.json").write_text(json.dumps(saved))
"""


def test_the_command_gets_the_body_and_the_reports(tmp_path: Path) -> None:
    recorder = script(tmp_path, RECORDER)
    notice = notice_for([failed_run(tmp_path), good_run(tmp_path)], "site")
    settings = NotifySettings(command=f"{shlex.quote(str(recorder))} --channel ops")
    assert send(settings, notice) == []
    received = json.loads((tmp_path / "bin" / "received.json").read_text())
    assert received["argv"] == ["--channel", "ops", *(str(path) for path in notice.attachments)]
    assert received["stdin"] == notice.body
    assert received["subject"] == notice.subject


def test_command_failures_are_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = script(tmp_path, "import sys\nprint('chat server said no', file=sys.stderr)\nsys.exit(3)\n")
    assert send(NotifySettings(command=str(failing)), Notice("s", "b")) == [
        f"notification command {failing} failed with exit code 3: chat server said no"
    ]
    missing = tmp_path / "nowhere"
    assert send(NotifySettings(command=str(missing)), Notice("s", "b")) == [
        f"notification command {missing} could not be started: No such file or directory"
    ]
    monkeypatch.setattr(notify, "COMMAND_TIMEOUT", 0.5)
    slow = script(tmp_path, "import time\ntime.sleep(30)\n")
    assert send(NotifySettings(command=str(slow)), Notice("s", "b")) == [
        f"notification command {slow} did not finish within 0 s and was stopped"
    ]


def test_a_mail_failure_does_not_stop_the_command(tmp_path: Path) -> None:
    recorder = script(tmp_path, RECORDER)
    settings = mail_settings(free_port(), command=str(recorder))
    [problem] = send(settings, Notice("s", "body\n"))
    assert "Connection refused" in problem
    assert json.loads((tmp_path / "bin" / "received.json").read_text())["stdin"] == "body\n"
