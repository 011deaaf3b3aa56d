"""Telling administrators what an unattended run did: one notice per cron call, by mail and/or a command.

Sending never raises: a cron call must finish its work and exit with its own code even when the mail server is down,
so every failure comes back as a sentence for the caller to print (cron's log is the last resort).
"""

from __future__ import annotations

import os
import shlex
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Final

from toolsync_tui.config import NotifySettings
from toolsync_tui.engine.run.verdict import tally
from toolsync_tui.engine.words import plural, size_text

if TYPE_CHECKING:
    from toolsync_tui.engine.run.pipeline import RunResult

SMTP_TIMEOUT: Final = 30.0  # seconds for each exchange with the mail server
COMMAND_TIMEOUT: Final = 60.0  # seconds for the notification command to finish
MAX_ATTACHMENT: Final = 5_000_000  # bytes (5 MB); a larger report is named in the mail rather than attached
STDERR_SHOWN: Final = 500  # characters of a failing command's error output quoted in the problem
SAMPLE_SHOWN: Final = 5  # lines of what a held run would remove, in its paragraph


@dataclass(frozen=True)
class Notice:
    subject: str
    body: str
    attachments: tuple[Path, ...] = ()


def _subject(results: Sequence[RunResult], site_label: str, problems: Sequence[str], waiting: Sequence[str]) -> str:
    held = sum(result.held is not None for result in results) + len(waiting)
    phrases = [f"{plural(held, 'run')} held for approval"] if held else []
    phrases += [tally([result.verdict for result in results])] if results else []
    if problems:
        phrases.append(f"{plural(len(problems), 'operation')} could not run")
    return f"toolsync on {site_label}: " + ("; ".join(phrases) or "nothing to do")


def _paragraph(result: RunResult) -> str:
    verdict = result.verdict
    lines = [f"{result.operation}: {result.source}", *_held(result), f"  {verdict.summary()}"]
    if result.cancelled:  # what became of the rows and of the file, as the run screen says it
        lines.append(f"  {verdict.headline()[0]}")
    lines += [f"  {label}: {path}" for label, path in result.files()]
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _held(result: RunResult) -> list[str]:
    """A held run's lines: why, how to approve or discard it, a sample of what it would remove."""
    held = result.held
    if held is None:
        return []
    what = "its removals are" if held.removals_only else "the run is"
    lines = [
        f"  HELD for approval ({what} waiting): {held.reason}",
        f"  approve: {held.approve_command()}   discard: {held.discard_command()}",
    ]
    lines += [f"  would remove: {line}" for line in held.sample[:SAMPLE_SHOWN]]
    if len(held.sample) > SAMPLE_SHOWN:
        lines.append(f"  ... (toolsync held list shows {len(held.sample)} lines, the report all)")
    lines.append("  its dry run:" if result.dry_run else "  what ran:")
    return lines


def notice_for(
    results: Sequence[RunResult], site_label: str, problems: Sequence[str] = (), waiting: Sequence[str] = ()
) -> Notice:
    """One notice for one cron call: a paragraph per run, then the operations that could not run, then those not run
    because a run of theirs waits for approval (`waiting`)."""
    paragraphs = [_paragraph(result) for result in results]
    if waiting:
        paragraphs.append("Not run, a held run waits for approval:\n" + "\n".join(f"  - {line}" for line in waiting))
    if problems:
        paragraphs.append("Could not run:\n" + "\n".join(f"  - {problem}" for problem in problems))
    if not paragraphs:
        paragraphs.append("Nothing ran.")
    reports = tuple(r.report_path for r in results if r.report_path is not None)
    return Notice(_subject(results, site_label, problems, waiting), "\n\n".join(paragraphs) + "\n", reports)


def wanted(
    settings: NotifySettings, results: Sequence[RunResult], problems: Sequence[str], waiting: Sequence[str] = ()
) -> bool:
    """Whether this cron call deserves a notice under notify.when (a held run, or one still waiting, always does)."""
    if settings.when == "never":
        return False
    if settings.when == "always":
        return bool(results or problems or waiting)
    return bool(problems or waiting) or any(r.exit_code != 0 for r in results)


def send(settings: NotifySettings, notice: Notice, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Mail the notice and/or hand it to the notification command, as configured; returns what went wrong."""
    problems: list[str] = []
    if settings.smtp_host:
        problems += _mail(settings, notice, environ)
    if settings.command:
        problems += _run_command(settings.command, notice)
    return problems


# --- mail ---------------------------------------------------------------------------------------------------------


def _sender(settings: NotifySettings) -> str:
    return settings.sender or f"toolsync@{socket.getfqdn()}"


def _readable(paths: Sequence[Path]) -> tuple[list[tuple[str, str]], list[str]]:
    """The reports that can be attached (name, text), and a body line for each one that is left out."""
    attached: list[tuple[str, str]] = []
    left_out: list[str] = []
    for path in paths:
        try:
            if path.stat().st_size > MAX_ATTACHMENT:
                left_out.append(f"Not attached (larger than {size_text(MAX_ATTACHMENT)}): {path}")
                continue
            attached.append((path.name, path.read_text(encoding="utf-8", errors="replace")))
        except OSError as exc:
            left_out.append(f"Not attached (could not be read: {exc.strerror or exc}): {path}")
    return attached, left_out


def _message(settings: NotifySettings, notice: Notice) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notice.subject
    message["From"] = _sender(settings)
    message["To"] = ", ".join(settings.recipients)
    attached, left_out = _readable(notice.attachments)
    message.set_content(notice.body + ("\n" + "\n".join(left_out) + "\n" if left_out else ""))
    for name, text in attached:
        message.add_attachment(text, subtype="plain", filename=name)
    return message


def _password(settings: NotifySettings, environ: Mapping[str, str]) -> str | None:
    return environ.get(settings.smtp_password_env) if settings.smtp_password_env else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"the server answered {exc.smtp_code} {answer}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {SMTP_TIMEOUT:.0f} s"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient was refused: " + "; ".join(
            f"{who} ({code} {text.decode(errors='replace')})" for who, (code, text) in exc.recipients.items()
        )
    if isinstance(exc, OSError) and exc.strerror:  # "Connection refused" rather than "[Errno 111] ..."
        return exc.strerror
    return str(exc) or type(exc).__name__


def _deliver(settings: NotifySettings, message: EmailMessage, password: str | None) -> dict[str, tuple[int, bytes]]:
    context = ssl.create_default_context()
    host, port = settings.smtp_host, settings.smtp_port
    client = (
        smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT, context=context)
        if settings.smtp_security == "tls"
        else smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT)
    )
    with client:
        if settings.smtp_security == "starttls":
            client.starttls(context=context)
        if settings.smtp_user:
            client.login(settings.smtp_user, password or "")
        return client.send_message(message)


def _mail(settings: NotifySettings, notice: Notice, environ: Mapping[str, str]) -> list[str]:
    to = ", ".join(settings.recipients)
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    if not settings.recipients:
        return [f"mail not sent: notify.recipients is empty (server {where})"]
    password = _password(settings, environ)
    if settings.smtp_user and not password:
        holder = settings.smtp_password_env or "(notify.smtp_password_env is empty)"
        return [f"mail to {to} not sent: notify.smtp_user is set but its password variable {holder} is not set"]
    try:
        refused = _deliver(settings, _message(settings, notice), password)
    except (OSError, ValueError) as exc:  # smtplib's and ssl's errors are OSErrors; ValueError: a bad header
        return [_without(f"mail to {to} through {where} failed: {_describe(exc)}", password)]
    return [
        _without(f"mail to {who} refused: {code} {text.decode(errors='replace')}", password)
        for who, (code, text) in refused.items()
    ]


def _without(text: str, secret: str | None) -> str:
    """Belt and braces: no server answer or error text may carry the password into a log."""
    return text.replace(secret, "***") if secret else text


# --- command ------------------------------------------------------------------------------------------------------


def _run_command(command: str, notice: Notice) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return [f"notification command not run: notify.command cannot be read ({exc})"]
    if not argv:
        return []
    env = {**os.environ, "TOOLSYNC_SUBJECT": notice.subject}  # for commands that post a title (chat, tickets)
    try:
        done = subprocess.run(
            [*argv, *(str(path) for path in notice.attachments)],
            input=notice.body,
            capture_output=True,
            text=True,
            env=env,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"notification command {argv[0]} did not finish within {COMMAND_TIMEOUT:.0f} s and was stopped"]
    except OSError as exc:
        return [f"notification command {argv[0]} could not be started: {exc.strerror or exc}"]
    if done.returncode != 0:
        said = done.stderr.strip()[-STDERR_SHOWN:]
        return [
            f"notification command {argv[0]} failed with exit code {done.returncode}" + (f": {said}" if said else "")
        ]
    return []
