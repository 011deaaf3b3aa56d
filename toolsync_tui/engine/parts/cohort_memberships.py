"""The users file's `cohort` (and optional `cohortid`) columns: membership of a system-level cohort, by name.

As tool_sync does (reference §2.2.1 step 11), but writing the rows Moodle's own APIs write (moodle-db-semantics §8):

* the cohort is looked up by name among the cohorts of the system context, case-insensitively as MariaDB's
  collation compares (the lowest id when several share the name);
* a missing cohort is created as cohort_add_cohort() writes it: contextid = the system context, idnumber = the
  `cohortid` cell (NULL when empty), description '', descriptionformat 1 (HTML; tool_sync wrote 0), visible 1,
  component '', theme '', timecreated = timemodified = now. Several rows of a batch naming one new cohort create it
  once, with the `cohortid` of the first of them. An idnumber another cohort already has fails the rows naming the
  new cohort (Moodle's cohort forms refuse it; the API would not check);
* `cohort_members (cohortid, userid, timeadded = now)` is inserted when absent, as cohort_add_member() does.

A `cohortid` given for a cohort that exists already is not compared with its idnumber: the users file names cohorts,
it does not edit them (the cohorts file does). Cohort enrolments of new members are Moodle's business: its cohort
sync materialises them (CONTRACT §4).

Given a list of `events`, apply() adds the standard-log events of its writes, as the cohort API logs them
(moodle/cohort_events.py): cohort_created, then cohort_member_added, in the system context; the caller records them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy.ext.asyncio import AsyncConnection

from toolsync_tui.engine.moodle import events as kinds
from toolsync_tui.engine.moodle.contexts import ContextLevel, system_context
from toolsync_tui.engine.moodle.event_log import Event, EventKind
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.moodle.text_match import TextMatch
from toolsync_tui.engine.rows import LINE, Outcome, Rule, first_match, outcome_rows, shown

ACTION = "cohort"
PART = "cohort"
NAME_MAX = 254  # cohort.name
IDNUMBER_MAX = 100  # cohort.idnumber
FORMAT_HTML = 1
REQ = "__req"  # position of a request in the batch
MEMBER_KEY = ["cohortkey", "userid"]


def new_cohort_row(
    *, contextid: int, name: str, idnumber: str | None, description: str, visible: int, component: str, now: int
) -> dict[str, Any]:
    """A `cohort` row as cohort_add_cohort() writes it."""
    return {
        "contextid": contextid,
        "name": name,
        "idnumber": idnumber,
        "description": description,
        "descriptionformat": FORMAT_HTML,
        "visible": visible,
        "component": component,
        "timecreated": now,
        "timemodified": now,
        "theme": "",
    }


class CohortMemberships:
    """Applies batches of cohort membership requests.

    `requests`: `__line` Int64, `userid` Int64 (null fails the request), `cohort` String (the name), and optionally
    `cohortid` String (the idnumber of a cohort to create). Values are trimmed; one detail outcome (part "cohort")
    per request, in request order.
    """

    def __init__(self, gateway: MoodleGateway) -> None:
        self.gateway = gateway
        # Names and idnumbers compare as tool_sync's get_record() on the site's database (text_match.py).
        self.match = TextMatch(gateway.kind)
        self.schema = gateway.schema
        self._system_context: int | None = None

    @property
    def system_context(self) -> int:
        if self._system_context is None:
            raise RuntimeError("CohortMemberships.prepare() must run before apply()")
        return self._system_context

    async def prepare(self, conn: AsyncConnection) -> None:
        """Read the system context's id: the context of the cohorts the users file names and creates."""
        self._system_context = (await system_context(self.gateway, conn)).id

    async def apply(
        self,
        conn: AsyncConnection,
        requests: pl.DataFrame,
        *,
        now: int,
        dry_run: bool,
        events: list[Event] | None = None,
    ) -> pl.DataFrame:
        """Resolve, plan and (unless dry_run) write one batch; one detail outcome per request. `events`: gets the log
        events of the writes (module docstring)."""
        req = _normalised(requests, self.match)
        if req.is_empty():
            return outcome_rows(req, Outcome.FAILED, ACTION, "", "", part=PART)
        req = req.join(await self._cohorts(conn, req), on="cohortkey", how="left", maintain_order="left")
        req = await self._plan_creations(conn, req)
        failed = req.filter(pl.col("problem").is_not_null())
        valid = req.filter(pl.col("problem").is_null())
        if not dry_run:
            valid = await self._create(conn, valid, now, events)
        valid = await self._plan_members(conn, valid)
        if not dry_run:
            await self._add_members(conn, valid, now, events)
        return pl.concat([_failed_outcomes(failed), _success_outcomes(valid, dry_run)]).sort(REQ).drop(REQ)

    async def _cohorts(self, conn: AsyncConnection, req: pl.DataFrame) -> pl.DataFrame:
        """cohortkey (the name's key) -> cohort_id of the system cohorts the batch names."""
        cohort = self.schema.cohort
        names = _distinct(req.filter(pl.col("cohort") != ""), "cohort")
        if not names:
            return pl.DataFrame(schema={"cohortkey": pl.String, "cohort_id": pl.Int64})
        found = await self.gateway.fetch_in(
            conn,
            cohort,
            "name",
            names,
            ["id", "name"],
            where=cohort.c.contextid == self.system_context,
            casefold=self.match.casefold,
        )
        return (
            found.cast({"id": pl.Int64, "name": pl.String})
            .sort("id")
            .select(self.match.stored(pl.col("name")).alias("cohortkey"), pl.col("id").alias("cohort_id"))
            .unique("cohortkey", keep="first", maintain_order=True)
        )

    async def _plan_creations(self, conn: AsyncConnection, req: pl.DataFrame) -> pl.DataFrame:
        """create (the first request of each missing cohort), the idnumber it gets, and every request's problem."""
        missing = pl.col("cohort_id").is_null()
        first = pl.col(REQ) == pl.col(REQ).min().over("cohortkey")
        req = req.with_columns(
            (missing & first & (pl.col("cohort") != "")).alias("create"),
            # Every request of a new cohort carries the idnumber its first request gives it (rows are in REQ order).
            pl.when(missing)
            .then(pl.col("cohortid").first().over("cohortkey"))
            .otherwise(pl.lit(""))
            .alias("new_idnumber"),
        ).with_columns(self.match.given(pl.col("new_idnumber")).alias("idnumberkey"))
        creating = req.filter(pl.col("create") & (pl.col("idnumberkey") != ""))
        # The first new cohort of the batch to claim an idnumber gets it; a later one is refused like a stored one.
        owners = creating.unique("idnumberkey", keep="first", maintain_order=True).select(
            "idnumberkey", pl.col("cohortkey").alias("owner_key"), pl.col("cohort").alias("owner")
        )
        req = (
            req.join(await self._taken_idnumbers(conn, creating), on="idnumberkey", how="left", maintain_order="left")
            .join(owners, on="idnumberkey", how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("idnumberkey") == "")
                .then(pl.lit(None, dtype=pl.String))
                .when(pl.col("taken_by").is_not_null())
                .then("taken_by")
                .when(pl.col("owner_key") != pl.col("cohortkey"))
                .then("owner")
                .alias("taken_by")
            )
        )
        return req.with_columns(_problem())

    async def _taken_idnumbers(self, conn: AsyncConnection, creating: pl.DataFrame) -> pl.DataFrame:
        """idnumberkey -> taken_by: the name of the stored cohort (any context) that has this idnumber."""
        cohort = self.schema.cohort
        schema = {"idnumberkey": pl.String, "taken_by": pl.String}
        idnumbers = _distinct(creating, "new_idnumber")
        if not idnumbers:
            return pl.DataFrame(schema=schema)
        found = await self.gateway.fetch_in(
            conn, cohort, "idnumber", idnumbers, ["id", "idnumber", "name"], casefold=self.match.casefold
        )
        return (
            found.cast({"id": pl.Int64, "idnumber": pl.String, "name": pl.String})
            .sort("id")
            .select(self.match.stored(pl.col("idnumber")).alias("idnumberkey"), pl.col("name").alias("taken_by"))
            .unique("idnumberkey", keep="first", maintain_order=True)
        )

    def _event(self, kind: EventKind, cohortid: int, userid: int | None = None) -> Event:
        """An event of a system cohort: the system context (level 10, instance 0), no course."""
        return Event(kind, cohortid, self.system_context, int(ContextLevel.SYSTEM), 0, 0, userid)

    async def _create(
        self, conn: AsyncConnection, valid: pl.DataFrame, now: int, events: list[Event] | None
    ) -> pl.DataFrame:
        """Insert the new cohorts as cohort_add_cohort() writes them, then read their ids back."""
        creating = valid.filter(pl.col("create"))
        if creating.is_empty():
            return valid
        await self.gateway.insert_many(
            conn,
            self.schema.cohort,
            [
                new_cohort_row(
                    contextid=self.system_context,
                    name=name,
                    idnumber=idnumber or None,
                    description="",
                    visible=1,
                    component="",
                    now=now,
                )
                for name, idnumber in creating.select("cohort", "new_idnumber").iter_rows()
            ],
        )
        created = (await self._cohorts(conn, creating)).rename({"cohort_id": "new_id"})
        if events is not None:
            ids = creating.select("cohortkey").join(created, on="cohortkey", maintain_order="left")["new_id"]
            events += [self._event(kinds.COHORT_CREATED, int(i)) for i in ids.drop_nulls()]
        return valid.join(created, on="cohortkey", how="left", maintain_order="left").with_columns(
            pl.coalesce("cohort_id", "new_id").alias("cohort_id")
        )

    async def _plan_members(self, conn: AsyncConnection, valid: pl.DataFrame) -> pl.DataFrame:
        """member_new: the first request of a (cohort, user) that is not a member yet."""
        members = self.schema.cohort_members
        schema = {"cohortid": pl.Int64, "userid": pl.Int64}
        users = _distinct(valid, "userid")
        cohorts = _distinct(valid, "cohort_id")
        stored = pl.DataFrame(schema=schema)
        if users and cohorts:
            found = await self.gateway.fetch_in(
                conn, members, "userid", users, list(schema), where=members.c.cohortid.in_(cohorts)
            )
            stored = found.cast(schema)  # type: ignore[arg-type]
        stored = stored.unique().rename({"cohortid": "cohort_id"}).with_columns(pl.lit(True).alias("member_stored"))
        # A cohort still to create (dry run) has no id: a null key never joins, its members are all new.
        valid = valid.join(stored, on=["cohort_id", "userid"], how="left", maintain_order="left")
        first = pl.col(REQ) == pl.col(REQ).min().over(MEMBER_KEY)
        return valid.with_columns((pl.col("member_stored").is_null() & first).alias("member_new"))

    async def _add_members(
        self, conn: AsyncConnection, valid: pl.DataFrame, now: int, events: list[Event] | None
    ) -> None:
        added = valid.filter(pl.col("member_new"))
        await self.gateway.insert_many(
            conn,
            self.schema.cohort_members,
            added.select(pl.col("cohort_id").alias("cohortid"), "userid", pl.lit(now).alias("timeadded")).to_dicts(),
        )
        if events is not None:
            pairs = added.select("cohort_id", "userid").iter_rows()
            events += [self._event(kinds.COHORT_MEMBER_ADDED, int(c), int(u)) for c, u in pairs]


def _normalised(requests: pl.DataFrame, match: TextMatch) -> pl.DataFrame:
    missing = [c for c in (LINE, "userid", "cohort") if c not in requests.columns]
    if missing:
        raise ValueError(f"cohort requests lack the column(s) {', '.join(missing)}")
    cohortid = pl.col("cohortid") if "cohortid" in requests.columns else pl.lit("")
    return requests.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias(REQ),
        pl.col(LINE).cast(pl.Int64),
        pl.col("userid").cast(pl.Int64),
        pl.col("cohort").cast(pl.String).fill_null("").str.strip_chars(),
        cohortid.cast(pl.String).fill_null("").str.strip_chars().alias("cohortid"),
    ).with_columns(
        match.given(pl.col("cohort")).alias("cohortkey"),
        match.given(pl.col("cohortid")).alias("idnumberkey"),
    )


def _problem() -> pl.Expr:
    cohort = shown(pl.col("cohort"))
    idnumber = shown(pl.col("new_idnumber"))
    return (
        pl.when(pl.col("userid").is_null())
        .then(pl.lit("the user was not created or found, so no cohort membership was added"))
        .when(pl.col("cohort") == "")
        .then(pl.lit("empty cohort name"))
        .when(pl.col("cohort").str.len_chars() > NAME_MAX)
        .then(pl.format(f"cohort '{{}}': a cohort name has at most {NAME_MAX} characters", cohort))
        .when(pl.col("cohort_id").is_null() & (pl.col("new_idnumber").str.len_chars() > IDNUMBER_MAX))
        .then(pl.format(f"cohortid '{{}}': a cohort idnumber has at most {IDNUMBER_MAX} characters", idnumber))
        .when(
            pl.col("cohort_id").is_null() & pl.col("taken_by").is_not_null() & (pl.col("taken_by") != pl.col("cohort"))
        )
        .then(
            pl.format(
                "cohort '{}' not created: cohortid '{}' is already the idnumber of cohort '{}'",
                cohort,
                idnumber,
                shown(pl.col("taken_by")),
            )
        )
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("problem")
    )


def _failed_outcomes(failed: pl.DataFrame) -> pl.DataFrame:
    rows = outcome_rows(failed, Outcome.FAILED, ACTION, pl.col("cohort"), pl.col("problem"), part=PART)
    return rows.with_columns(failed[REQ])


def _success_outcomes(valid: pl.DataFrame, dry_run: bool) -> pl.DataFrame:
    cohort = shown(pl.col("cohort"))
    created = "would be created" if dry_run else "created"
    added = (
        pl.when(pl.col("create"))
        .then(pl.format(f"added to cohort '{{}}' (cohort {created})", cohort))
        .otherwise(pl.format("added to cohort '{}'", cohort))
    )
    rules = [
        Rule(pl.col("member_new"), Outcome.CREATED, ACTION, added),
        Rule(pl.lit(True), Outcome.UNCHANGED, ACTION, pl.format("already a member of cohort '{}'", cohort)),
    ]
    return first_match(valid, rules, pl.col("cohort"), part=PART, keep=[REQ])[0]


def _distinct(frame: pl.DataFrame, column: str) -> list[Any]:
    values: Sequence[Any] = frame[column].drop_nulls().unique().to_list()
    return sorted(values)
