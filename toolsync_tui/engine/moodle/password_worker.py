"""What a password hashing worker runs: SHA-512 crypt through libxcrypt, and Moodle's limits on a password.

Kept apart from the pool (passwords.py) so that the workers' server loads only this and libxcrypt: it starts in a
few hundredths of a second, early enough to hash while a headless run is still importing (headstart.py).
Nothing here puts a password (or the pepper) into an exception, a log line or a repr.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from typing import TYPE_CHECKING, Final

from toolsync_tui.engine.moodle.lifeline import hold

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

MAX_PASSWORD_BYTES: Final = 128  # Moodle's MAX_PASSWORD_CHARACTERS, compared with PHP strlen(), i.e. UTF-8 bytes
FAST_ROUNDS: Final = 5000  # hash_internal_user_password($pw, true): what tool_uploaduser stores

_HASH_CHARS: Final = 86
# A stored hash a password can be checked against (and kept when it matches), as a whole.
REUSABLE_HASH: Final = r"\$6\$rounds=\d+\$[A-Za-z0-9./]{16}\$[A-Za-z0-9./]{86}"
_REUSABLE_RE: Final = re.compile(REUSABLE_HASH)
# The workers yield to everything else on the machine: the run's own planning and writes, the database, the site's
# web server. Hashing fills the cores they leave idle (a run's start-up, its waits on the database).
WORKER_NICENESS: Final = 10


class PasswordRejected(ValueError):
    """A password Moodle would not store. The message says why and never contains the password."""


class PasswordHashingError(RuntimeError):
    """libxcrypt did not produce a SHA-512 crypt hash (should not happen for validated input)."""


def password_problem(password: str) -> str | None:
    """Why Moodle would refuse to store this password, or None. Cheap: usable to pre-check a file without hashing."""
    if "\0" in password:
        # PHP's crypt() stops at NUL, so Moodle would silently keep only the text before it.
        return "password contains a NUL character"
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        # Returned, not raised from here: the UnicodeEncodeError quotes the offending text and would ride along.
        return "password is not valid Unicode text (it contains a lone surrogate)"
    if size > MAX_PASSWORD_BYTES:
        return f"password is longer than Moodle's limit of {MAX_PASSWORD_BYTES} bytes (UTF-8)"
    return None


def make_salt() -> str:
    """A salt made as Moodle makes it: 16 random bytes, base64, '+' -> '.', first 16 characters."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii").replace("+", ".")[:16]


def crypt_sha512(secret: str, setting: str) -> str:
    import crypt_r  # type: ignore[import-untyped]  # no py.typed; one function used, typed here. Cached after once.

    failure: str | None = None
    try:
        result: object = crypt_r.crypt(secret, setting)
    except (OSError, ValueError) as exc:
        # Kept to the class name and raised outside this block, so no exception carrying the input is chained.
        failure, result = type(exc).__name__, None
    if not isinstance(result, str) or not result.startswith(setting) or len(result) != len(setting) + _HASH_CHARS:
        # libxcrypt signals failure with a "*0"/"*1" token or an error; neither says anything about the input.
        raise PasswordHashingError(f"libxcrypt could not make a SHA-512 crypt hash ({failure or 'failure token'})")
    return result


def hash_or_reject(password: str, rounds: int, pepper: str, salt: str | None) -> str | PasswordRejected:
    # Returns the rejection instead of raising it: a raised exception's traceback keeps this frame, and with it the
    # password, alive for as long as the exception object lives (in a result list, possibly for the whole run).
    problem = password_problem(password)
    if problem is not None:
        return PasswordRejected(problem)
    # Appended before hashing, as Moodle's update_internal_user_password() does; the pepper is not limited by the
    # 128 bytes (hash_internal_user_password's $pepperlength allowance; validate() checks the plain password only).
    return crypt_sha512(password + pepper, f"$6$rounds={rounds}${make_salt() if salt is None else salt}$")


# --- the pool's processes run these ----------------------------------------------------------------------------

_worker_rounds: int = FAST_ROUNDS
_worker_pepper: str = ""


def init_worker(rounds: int, pepper: str, lifeline: Connection) -> None:
    # Rounds and pepper are fixed per run: sent once per process, not pickled into every task.
    global _worker_rounds, _worker_pepper
    _worker_rounds, _worker_pepper = rounds, pepper
    os.nice(WORKER_NICENESS)
    hold(lifeline)  # a worker holding passwords never outlives the run (lifeline.py)


def worker_pid() -> int:
    return os.getpid()


def hash_chunk(passwords: list[str], current: list[str | None]) -> tuple[int, list[str | PasswordRejected]]:
    return os.getpid(), [_keep_or_hash(p, c) for p, c in zip(passwords, current, strict=True)]


def _keep_or_hash(password: str, current: str | None) -> str | PasswordRejected:
    # The stored hash when the password still matches it (same cost as hashing anew): a re-run stays "unchanged".
    if current is not None and reusable(current) and password_problem(password) is None:
        setting = current[: current.rindex("$") + 1]
        if crypt_sha512(password + _worker_pepper, setting) == current:
            return current
    return hash_or_reject(password, _worker_rounds, _worker_pepper, None)


def reusable(current: str) -> bool:
    """Whether a stored hash is one a password can be checked against (and kept when it matches)."""
    return _REUSABLE_RE.fullmatch(current) is not None
