"""The command files of the fault-injection tests (tests/faults), generated deterministically: the same text on
every machine and every run, so that only the kill point varies with a test's seed.

Users and courses are those of benchmarks/generate.py: seeded user `i` is `user_row(i)` (named by its idnumber),
course `c` is `course_shortname(c)`. Each file mixes what a real one holds: creations and updates, removals, rows
that fail, and rows that come back to what an earlier row (in another batch) wrote.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from benchmarks.cohorts import cohort_idnumber, cohort_name
from benchmarks.enrolments import group_name, group_number
from benchmarks.generate import course_shortname, user_row

SEEDED_USERS = 1000
COURSES = 24
# The site's enrolments and cohort memberships before any file of the tests runs (fault_site.build_template).
BASE_ENROLMENTS = 1200
BASE_COHORTS = 20
BASE_MEMBERSHIPS = 1000
# The files' sizes.
USERS_ROWS = 1000
ENROLS_ROWS = 2000
COHORTS_ROWS = 2000

MISSING_COURSE = course_shortname(COURSES + 7)
MISSING_USER = "2025-E9999999"
PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#%-_"
NEW_USERS = 100_000  # user numbers of the accounts the users file creates


def _idnumber(user: int) -> str:
    return user_row(user)["idnumber"]


def _csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "".join(";".join(row) + "\n" for row in [header, *rows])


def _pairs(count: int, users: int, courses: int, seed: int) -> list[tuple[int, int]]:
    """`count` distinct (user, course) pairs of the seeded users and courses, in a random order."""
    return [divmod(p, courses) for p in random.Random(seed).sample(range(users * courses), count)]


# -- the site's own rows ------------------------------------------------------------------------------------------


def base_pairs() -> list[tuple[int, int]]:
    return _pairs(BASE_ENROLMENTS, SEEDED_USERS, COURSES, seed=1)


def base_enrolments() -> str:
    """An enrolments file enrolling the base pairs as students, each in its "TD nn" group."""
    rows = [
        ("add", "student", course_shortname(c), _idnumber(u), "manual", "gaddcreate", group_name(group_number(u, c)))
        for u, c in base_pairs()
    ]
    return _csv(("cmd", "rolename", "cid", "uid", "enrol", "gcmd", "g1"), rows)


def base_memberships() -> list[tuple[int, int]]:
    """(user, cohort) pairs of the base cohorts."""
    return _pairs(BASE_MEMBERSHIPS, SEEDED_USERS, BASE_COHORTS, seed=2)


def base_cohort_memberships() -> str:
    rows = [("add", cohort_idnumber(k), cohort_name(k), _idnumber(u)) for u, k in base_memberships()]
    return _csv(("cmd", "cidnumber", "cname", "userid"), rows)


# -- the files under test -----------------------------------------------------------------------------------------


def users_file(profile_fields: tuple[str, str]) -> str:
    """Accounts created (three in four) and seeded ones updated, each with a password, both profile fields and an
    enrolment into a course and a group (some into a second course as teacher); some accounts come back later in the
    file changed; a few name a course that does not exist (their enrolment fails, the account is still written)."""
    rng = random.Random(3)
    colour, campus = (f"profile_field_{name}" for name in profile_fields)
    header = (
        *("username", "firstname", "lastname", "email", "idnumber", "institution", "department", "city"),
        *("country", "password", colour, campus, "course1", "role1", "group1", "course2", "role2"),
    )
    seeded = rng.sample(range(SEEDED_USERS), SEEDED_USERS)
    created: list[int] = []
    passwords: dict[int, str] = {}
    rows = []
    for k in range(USERS_ROWS):
        draw = rng.random()
        variant = 0
        if draw < 0.25 and seeded:
            user, variant = seeded.pop(), 1
        elif draw < 0.26 and created:  # fails: an account appears once in a file
            user, variant = rng.choice(created), 3
        else:
            user = NEW_USERS + k
            created.append(user)
        password = passwords.setdefault(user, "".join(rng.choices(PASSWORD_ALPHABET, k=12)))
        course = MISSING_COURSE if draw > 0.98 else course_shortname(rng.randrange(COURSES))
        second = ("", "") if rng.random() < 0.75 else (course_shortname(rng.randrange(COURSES)), "teacher")
        values = user_row(user, variant)
        rows.append(
            (
                *values.values(),
                password,
                rng.choice(("red", "green", "blue", "")),
                f"Campus {rng.randrange(5)}",
                course,
                "student",
                f"Groupe {rng.choice('ABC')}",
                *second,
            )
        )
    return _csv(header, rows)


def enrols_file() -> str:
    """Enrolments added (into groups the file creates), the site's own unenrolled, shifted to teacher and moved
    between groups (gadd, gdel, greplacecreate), some added then removed further on, and rows naming a user or a
    course that does not exist."""
    rng = random.Random(4)
    base = base_pairs()
    rng.shuffle(base)
    taken = set(base)
    fresh = (p for p in _pairs(SEEDED_USERS * COURSES // 2, SEEDED_USERS, COURSES, seed=5) if p not in taken)
    rows: list[tuple[str, ...]] = []
    later: list[tuple[int, tuple[str, ...]]] = []  # rows to insert further on: (position, row)
    for k in range(ENROLS_ROWS):
        draw = rng.random()
        if draw < 0.12 and base:
            u, c = base.pop()
            rows.append(("del", "student", course_shortname(c), _idnumber(u), "manual", "", ""))
        elif draw < 0.22 and base:
            u, c = base.pop()
            rows.append(("shift", "teacher", course_shortname(c), _idnumber(u), "manual", "", ""))
        elif draw < 0.37 and base:
            u, c = base.pop()
            command, group = rng.choice(
                (
                    ("gadd", group_name((group_number(u, c) + 1) % 10)),
                    ("gdel", group_name(group_number(u, c))),
                    ("greplacecreate", f"Atelier {rng.randrange(4)}"),
                )
            )
            rows.append(("add", "student", course_shortname(c), _idnumber(u), "manual", command, group))
        elif draw < 0.385:
            rows.append(("add", "student", course_shortname(rng.randrange(COURSES)), MISSING_USER, "manual", "", ""))
        elif draw < 0.40:
            rows.append(("add", "student", MISSING_COURSE, _idnumber(rng.randrange(SEEDED_USERS)), "manual", "", ""))
        else:
            u, c = next(fresh)
            row = ("add", "student", course_shortname(c), _idnumber(u), "manual", "gaddcreate", f"Projet {u % 7}")
            rows.append(row)
            if rng.random() < 0.04:  # removed again further on, most often in another batch
                later.append((k + rng.randrange(50, 600), ("del", "student", *row[2:5], "", "")))
    for position, removal in sorted(later, reverse=True):
        rows.insert(min(position, len(rows)), removal)
    return _csv(("cmd", "rolename", "cid", "uid", "enrol", "gcmd", "g1"), rows)


def cohorts_file() -> str:
    """Members added to the site's cohorts and to cohorts the file creates, members removed, some added then
    removed further on, and rows naming a user that does not exist."""
    rng = random.Random(6)
    members = base_memberships()
    rng.shuffle(members)
    taken = set(members)
    new_cohorts = range(100, 140)
    fresh_base = (p for p in _pairs(SEEDED_USERS * BASE_COHORTS // 2, SEEDED_USERS, BASE_COHORTS, 7) if p not in taken)
    fresh_new = ((u, 100 + k) for u, k in _pairs(SEEDED_USERS * len(new_cohorts) // 4, SEEDED_USERS, 40, 8))
    rows: list[tuple[str, ...]] = []
    later: list[tuple[int, tuple[str, ...]]] = []
    for k in range(COHORTS_ROWS):
        draw = rng.random()
        if draw < 0.20 and members:
            u, cohort = members.pop()
            rows.append(("del", cohort_idnumber(cohort), "", _idnumber(u)))
            continue
        if draw < 0.23:
            rows.append(("add", cohort_idnumber(rng.randrange(BASE_COHORTS)), "", MISSING_USER))
            continue
        u, cohort = next(fresh_base) if draw < 0.60 else next(fresh_new)
        row = ("add", cohort_idnumber(cohort), cohort_name(cohort), _idnumber(u))
        rows.append(row)
        if rng.random() < 0.04:
            later.append((k + rng.randrange(50, 600), ("del", row[1], "", row[3])))
    for position, removal in sorted(later, reverse=True):
        rows.insert(min(position, len(rows)), removal)
    return _csv(("cmd", "cidnumber", "cname", "userid"), rows)
