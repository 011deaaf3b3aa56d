"""Moodle 4.5 password hashes: format, known answers, PHP's own password_verify, and the process-pool batch API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator

import pytest

from toolsync_tui.engine.moodle.passwords import (
    CREATE_PASSWORD_PREFERENCE,
    DEFAULT_ROUNDS,
    FAST_ROUNDS,
    MAX_PASSWORD_BYTES,
    NOPASS,
    NOT_CACHED,
    TO_BE_GENERATED,
    PasswordHasher,
    PasswordRejected,
    check_pepper,
    hash_password,
    make_salt,
    password_problem,
)

HASH_5000 = re.compile(r"\$6\$rounds=5000\$[A-Za-z0-9./]{16}\$[A-Za-z0-9./]{86}")
HASH_10000 = re.compile(r"\$6\$rounds=10000\$[A-Za-z0-9./]{16}\$[A-Za-z0-9./]{86}")
SECRET_MARK = "Zq7-SECRET-MARK"  # a password fragment that must never surface in an error
PEPPER = "pepper-9f#Kx2!vR7@qL0"
LONGEST = "é" * 64  # 64 characters, 128 bytes: exactly Moodle's limit
TOO_LONG = "é" * 64 + "a"  # 65 characters, 129 bytes


def salt_of(stored: str) -> str:
    return stored.split("$")[3]


# --- an independent SHA-512 crypt: stack-notes.md Appendix A (pure hashlib, written from Drepper's spec) ----------

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PERM = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(out)


def reference_sha512_crypt(password: str, salt: str, rounds: int) -> str:
    pw, s = password.encode("utf-8"), salt[:16].encode("ascii")
    b = hashlib.sha512(pw + s + pw).digest()
    a = hashlib.sha512(pw + s)
    n = len(pw)
    while n > 64:
        a.update(b)
        n -= 64
    a.update(b[:n])
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    c = a.digest()
    p = (hashlib.sha512(pw * len(pw)).digest() * (len(pw) // 64 + 1))[: len(pw)]
    sb = (hashlib.sha512(s * (16 + c[0])).digest() * (len(s) // 64 + 1))[: len(s)]
    for i in range(rounds):
        h = hashlib.sha512(p if i & 1 else c)
        if i % 3:
            h.update(sb)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    enc = "".join(_b64(c[x], c[y], c[z], 4) for x, y, z in _PERM) + _b64(0, 0, c[63], 2)
    return f"$6$rounds={rounds}${salt[:16]}${enc}"


# --- format and salt ----------------------------------------------------------------------------------------------


def test_rounds_5000_format_is_118_chars() -> None:
    stored = hash_password("correct horse battery staple", FAST_ROUNDS)
    assert HASH_5000.fullmatch(stored)
    assert len(stored) == 118


def test_rounds_10000_format_is_119_chars() -> None:
    stored = hash_password("correct horse battery staple", DEFAULT_ROUNDS)
    assert HASH_10000.fullmatch(stored)
    assert len(stored) == 119


def test_same_password_hashes_differently_each_time() -> None:
    first, second = hash_password("same", FAST_ROUNDS), hash_password("same", FAST_ROUNDS)
    assert first != second
    assert salt_of(first) != salt_of(second)


def test_salt_is_made_as_moodle_makes_it() -> None:
    salts = [make_salt() for _ in range(2000)]
    assert all(re.fullmatch(r"[A-Za-z0-9./]{16}", s) for s in salts)
    assert len(set(salts)) == len(salts)
    assert any("." in s for s in salts)  # '+' became '.', as strtr(base64_encode(...), '+', '.') does
    assert not any("+" in s for s in salts)
    # Moodle's recipe is the first 16 base64 characters of 16 random bytes: they decode to 12 bytes.
    assert all(len(base64.b64decode(s.replace(".", "+"))) == 12 for s in salts[:50])


# --- known answers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rounds", "salt"),
    [
        ("correct horse battery staple", FAST_ROUNDS, "abcdefghijklmnop"),
        ("pässwörd-日本 🙂", FAST_ROUNDS, "Zz09./Zz09./Zz09"),
        (LONGEST, FAST_ROUNDS, "0123456789abcdef"),
        ("x" * 128, DEFAULT_ROUNDS, "ABCDEFGHIJ./0123"),
        ("", FAST_ROUNDS, "................"),
    ],
)
def test_known_answer_matches_independent_reference(password: str, rounds: int, salt: str) -> None:
    assert hash_password(password, rounds, salt=salt) == reference_sha512_crypt(password, salt, rounds)


def test_known_answer_with_pepper_matches_reference_of_password_plus_pepper() -> None:
    salt = "ABCDEFGHIJ./0123"
    expected = reference_sha512_crypt("Secret1!" + PEPPER, salt, DEFAULT_ROUNDS)
    assert hash_password("Secret1!", DEFAULT_ROUNDS, PEPPER, salt=salt) == expected
    assert hash_password("Secret1!", DEFAULT_ROUNDS, salt=salt) != expected


@pytest.mark.parametrize(
    ("password", "rounds", "salt", "expected"),
    [
        # Ulrich Drepper's SHA-crypt specification test vectors (the salts there are cut to 16 characters).
        (
            "Hello world!",
            DEFAULT_ROUNDS,
            "saltstringsaltst",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy"
            "/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "This is just a test",
            FAST_ROUNDS,
            "toolongsaltstrin",
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz"
            "/e1JSbq3y6JMxxl8audkUEm0",
        ),
        # Made by PHP 8.2 crypt($password, '$6$rounds=N$<salt>$'), as Moodle's hash_internal_user_password() calls it.
        (
            "pässwörd-日本",
            FAST_ROUNDS,
            "abcdefghijklmnop",
            "$6$rounds=5000$abcdefghijklmnop$BbDsPfPHAVA0jugaqc0YmhPdcn049W7g/L5.piEVR/tvrmJwWX.nGdaoZByHRak"
            ".N4n1/HY6rVPZ4aZdmqL8Y0",
        ),
        (
            LONGEST,
            FAST_ROUNDS,
            "Zz09./Zz09./Zz09",
            "$6$rounds=5000$Zz09./Zz09./Zz09$4/w2LbcgbeOdnJMJhrFNI8A.uiZ7J6ddMt8BCgTWZ4NA8fPIScvCnPE7vHZS04hJ"
            "DnN.IFJBj0H0U2L0oj0yS1",
        ),
    ],
)
def test_published_and_php_vectors(password: str, rounds: int, salt: str, expected: str) -> None:
    assert hash_password(password, rounds, salt=salt) == expected


def test_php_vector_with_pepper() -> None:
    # PHP: crypt("Secret1!" . "pepper-Xy9#", '$6$rounds=10000$ABCDEFGHIJ./0123$')
    expected = (
        "$6$rounds=10000$ABCDEFGHIJ./0123$4jtx5aHb4eXzktLe.IwpntBEtrfWOqWaq/uku9DjXOSSCrWdM5RIpzzxbz7UeQUa3utIHUN"
        "EIUjIUC0fbEQYA/"
    )
    assert hash_password("Secret1!", DEFAULT_ROUNDS, "pepper-Xy9#", salt="ABCDEFGHIJ./0123") == expected


# --- limits and special values ------------------------------------------------------------------------------------


def test_128_bytes_is_accepted_129_is_rejected() -> None:
    assert len(LONGEST.encode()) == MAX_PASSWORD_BYTES
    assert HASH_5000.fullmatch(hash_password(LONGEST, FAST_ROUNDS))
    with pytest.raises(PasswordRejected, match="128 bytes"):
        hash_password(TOO_LONG, FAST_ROUNDS)
    assert isinstance(PasswordRejected("x"), ValueError)


def test_pepper_does_not_count_against_the_128_bytes() -> None:
    assert HASH_5000.fullmatch(hash_password(LONGEST, FAST_ROUNDS, PEPPER))


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        (SECRET_MARK + "x" * 200, "longer than"),
        (SECRET_MARK + "\0tail", "NUL"),
        (SECRET_MARK + "\udcff", "not valid Unicode"),
    ],
)
def test_rejections_never_contain_the_password(password: str, reason: str) -> None:
    assert reason in (password_problem(password) or "")
    with pytest.raises(PasswordRejected) as caught:
        hash_password(password, FAST_ROUNDS)
    exc = caught.value
    assert reason in str(exc)
    rendered = "".join(traceback.format_exception(exc))
    for text in (str(exc), repr(exc), repr(exc.args), rendered):
        assert SECRET_MARK not in text
        assert "\\udcff" not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None  # no chained UnicodeEncodeError quoting the text


def test_bad_pepper_is_refused_without_quoting_it() -> None:
    for pepper in (SECRET_MARK + "\0", SECRET_MARK + "\udcff", SECRET_MARK + "p" * 400):
        with pytest.raises(ValueError, match="pepper") as caught:
            check_pepper(pepper)
        assert SECRET_MARK not in str(caught.value)
        assert caught.value.__context__ is None
        with pytest.raises(ValueError, match="pepper"):
            PasswordHasher(pepper=pepper)


@pytest.mark.parametrize("rounds", [999, 0, -5000, 1_000_000_000, True])
def test_rounds_out_of_range_are_refused(rounds: int) -> None:
    with pytest.raises(ValueError, match="rounds"):
        hash_password("pw", rounds)


@pytest.mark.parametrize("salt", ["short", "abcdefghijklmnopq", "abcdefghijklmn$p", "abcdefghijklmno+"])
def test_malformed_salt_is_refused(salt: str) -> None:
    with pytest.raises(ValueError, match="salt"):
        hash_password("pw", FAST_ROUNDS, salt=salt)


def test_special_values_are_moodles_literals() -> None:
    assert NOPASS == "*NOPASS*"
    assert TO_BE_GENERATED == "to be generated"
    assert CREATE_PASSWORD_PREFERENCE == "create_password"
    assert NOT_CACHED == "not cached"


# --- PHP's own password_verify (what Moodle's login runs) ----------------------------------------------------------

# Cases arrive as JSON on stdin, never on the command line. For each [password, hash]: password_verify, and PHP's
# crypt() with the hash's own setting, which must give back the very same text.
_PHP_CHECK = r"""
$cases = json_decode(stream_get_contents(STDIN), true, 8, JSON_THROW_ON_ERROR);
$out = [];
foreach ($cases as [$password, $hash]) {
    $out[] = [password_verify($password, $hash), crypt($password, substr($hash, 0, strrpos($hash, '$') + 1))];
}
echo json_encode($out, JSON_THROW_ON_ERROR);
"""


def php_check(php: str, cases: list[tuple[str, str]]) -> list[tuple[bool, str]]:
    done = subprocess.run(
        [php, "-r", _PHP_CHECK],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    return [(bool(ok), str(crypted)) for ok, crypted in json.loads(done.stdout)]


@pytest.mark.parametrize(
    ("password", "rounds", "pepper", "wrong"),
    [
        ("correct horse battery staple", FAST_ROUNDS, "", "correct horse battery stapler"),
        ("correct horse battery staple", DEFAULT_ROUNDS, "", "Correct horse battery staple"),
        ("pässwörd-日本 🙂", FAST_ROUNDS, "", "passwort-日本 🙂"),
        (LONGEST, FAST_ROUNDS, "", "é" * 63),
        ("x" * 128, DEFAULT_ROUNDS, "", "x" * 127),
        ("Secret1!", DEFAULT_ROUNDS, PEPPER, "Secret1!"),  # wrong: the plain password, without the pepper
        (LONGEST, FAST_ROUNDS, PEPPER, LONGEST + PEPPER[:-1]),
    ],
)
def test_php_password_verify_accepts_the_right_password_only(
    php: str, password: str, rounds: int, pepper: str, wrong: str
) -> None:
    stored = hash_password(password, rounds, pepper)
    (right_ok, right_crypt), (wrong_ok, _) = php_check(php, [(password + pepper, stored), (wrong, stored)])
    assert right_ok is True
    assert right_crypt == stored  # byte-identical to what Moodle itself would have written with this salt
    assert wrong_ok is False


async def test_php_verifies_a_whole_batch(php: str) -> None:
    passwords = [f"user{i}-Pässwort!" for i in range(24)] + [LONGEST, "x" * 128]
    async with PasswordHasher(FAST_ROUNDS, PEPPER, workers=2, chunk_size=5) as hasher:
        results = await hasher.hash_many(passwords)
    stored = [r for r in results if isinstance(r, str)]
    assert len(stored) == len(passwords)
    checks = php_check(php, [(p + PEPPER, h) for p, h in zip(passwords, stored, strict=True)])
    assert all(ok and crypted == h for (ok, crypted), h in zip(checks, stored, strict=True))


# --- the batch API --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hasher() -> Iterator[PasswordHasher]:
    # Two workers whatever the machine, so spreading is tested even on one CPU (the OS time-slices them).
    with PasswordHasher(FAST_ROUNDS, workers=2, chunk_size=8) as shared:
        yield shared


def test_default_pool_is_sized_to_the_usable_cpus() -> None:
    with PasswordHasher() as default:
        expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert default.workers == expected
        assert default.workers <= (os.cpu_count() or 1)
        assert default.rounds == FAST_ROUNDS


async def test_hash_many_keeps_order_and_marks_bad_rows(hasher: PasswordHasher) -> None:
    passwords = [f"password-{i}" for i in range(100)]
    passwords[37] = SECRET_MARK + TOO_LONG
    passwords[60] = SECRET_MARK + "\0"
    results = await hasher.hash_many(passwords)
    assert len(results) == len(passwords)
    for i, (password, result) in enumerate(zip(passwords, results, strict=True)):
        if i in (37, 60):
            assert isinstance(result, PasswordRejected)
            assert SECRET_MARK not in str(result)
            assert SECRET_MARK not in repr(result)
            assert result.__traceback__ is None  # made, not raised: no frame holds the password
        else:
            assert isinstance(result, str)
            assert HASH_5000.fullmatch(result)
            assert hash_password(password, FAST_ROUNDS, salt=salt_of(result)) == result
    assert "longer than" in str(results[37])
    assert "NUL" in str(results[60])
    # Two spot checks against the independent reference rather than the module itself.
    for i in (0, 99):
        result = results[i]
        assert isinstance(result, str)
        assert reference_sha512_crypt(passwords[i], salt_of(result), FAST_ROUNDS) == result


async def test_hash_many_uses_several_worker_processes(hasher: PasswordHasher) -> None:
    results = await hasher.hash_many([f"spread-{i}" for i in range(256)])
    assert all(isinstance(r, str) for r in results)
    assert len(hasher.worker_pids) == 2
    assert os.getpid() not in hasher.worker_pids


async def test_identical_passwords_get_their_own_salt(hasher: PasswordHasher) -> None:
    results = await hasher.hash_many(["Welcome2024!"] * 20)
    assert len(set(results)) == 20
    assert all(isinstance(r, str) and hash_password("Welcome2024!", FAST_ROUNDS, salt=salt_of(r)) == r for r in results)


async def test_peppered_batch_hashes_password_plus_pepper() -> None:
    async with PasswordHasher(DEFAULT_ROUNDS, PEPPER, workers=1) as peppered:
        (result,) = await peppered.hash_many(["Secret1!"])
    assert isinstance(result, str)
    assert HASH_10000.fullmatch(result)
    assert reference_sha512_crypt("Secret1!" + PEPPER, salt_of(result), DEFAULT_ROUNDS) == result


async def test_progress_counts_every_password(hasher: PasswordHasher) -> None:
    seen: list[int] = []
    await hasher.hash_many([f"p{i}" for i in range(50)], on_progress=seen.append)
    assert sum(seen) == 50
    assert len(seen) == 7  # chunks of 8


async def test_event_loop_keeps_running_while_hashing(hasher: PasswordHasher) -> None:
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await hasher.hash_many([f"loop-{i}" for i in range(128)])
    done.set()
    await task
    assert ticks > 100  # hashing on the loop itself would have let it tick about once


async def test_empty_batch(hasher: PasswordHasher) -> None:
    assert await hasher.hash_many([]) == []


def test_repr_shows_no_pepper() -> None:
    with PasswordHasher(FAST_ROUNDS, SECRET_MARK, workers=1) as peppered:
        assert SECRET_MARK not in repr(peppered)
        assert "peppered=True" in repr(peppered)


async def test_closed_hasher_refuses_work() -> None:
    async with PasswordHasher(FAST_ROUNDS, workers=1) as short_lived:
        assert len(await short_lived.hash_many(["a", "b"])) == 2
    with pytest.raises(RuntimeError, match="closed"):
        await short_lived.hash_many(["c"])


def test_the_pool_starts_under_the_interfaces_captured_stderr() -> None:
    """Under the interface sys.stderr is Textual's capture, whose fileno() is -1: multiprocessing's resource tracker,
    spawned with it, refused it, and a run with a password column failed ("bad value(s) in fds_to_keep") unless the
    tracker had been started before. In a fresh interpreter, so that no earlier test has started it."""
    probe = (
        "import asyncio, io, sys\n"
        "class Captured(io.StringIO):\n"
        "    def fileno(self) -> int:\n"
        "        return -1  # as textual.app._PrintCapture\n"
        "sys.stderr = Captured()\n"
        "from toolsync_tui.engine.moodle.passwords import FAST_ROUNDS, PasswordHasher\n"
        "async def main():\n"
        "    async with PasswordHasher(FAST_ROUNDS, workers=1) as hasher:\n"
        "        [hashed] = await hasher.hash_many(['Secret-1'])\n"
        "    print(hashed[:15])\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "$6$rounds=5000$"
