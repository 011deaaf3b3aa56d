"""The TOML configuration: validated with pydantic, read with tomllib, written with tomli-w.

Saving keeps every key the file had, known or not: edits are applied to the raw document.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolsync_tui.engine.unattended.schedules import ScheduleProblem, check_expression

CourseKey = Literal["id", "idnumber", "shortname"]
UserKey = Literal["id", "idnumber", "username", "email"]
GroupKey = Literal["id", "idnumber", "name"]


class Section(BaseModel):
    """A table of the configuration file. The one place its help is written: the docstring for the table, each field's
    description for a key. The settings screen shows them; tests/engine/test_config.py renders config.example.toml
    from them."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


def section_help(model: type[BaseModel]) -> str:
    """A table's help: its model's own docstring as one paragraph ("" for a model without one)."""
    return " ".join((model.__doc__ or "").split())


class DatabaseSettings(Section):
    """The Moodle database toolsync writes to."""

    driver: Literal["mariadb", "postgresql", "sqlite"] = Field(
        "mariadb",
        description='The Moodle site\'s own database: "mariadb" (MariaDB or MySQL, $CFG->dbtype mariadb or mysqli) or '
        '"postgresql" ($CFG->dbtype pgsql); "sqlite" for a sandbox.',
    )
    host: str = Field("127.0.0.1", description="The database server ($CFG->dbhost).")
    port: int = Field(
        3306, ge=1, le=65535, description="Its TCP port: 3306 by default, 5432 for postgresql when not set."
    )
    socket: str = Field(
        "",
        description='A Unix socket: its path for MariaDB (e.g. "/run/mysqld/mysqld.sock"), its directory for '
        'PostgreSQL (e.g. "/var/run/postgresql"); when set, host and port are not used.',
    )
    user: str = Field("moodle", description="The database user ($CFG->dbuser).")
    password: str = Field(
        "",
        description="Better left empty: the variable named by password_env, when set, gives the password. "
        "Typed here, it is saved in the configuration file (keep it mode 600).",
    )
    password_env: str = Field(
        "TOOLSYNC_DB_PASSWORD",
        description="The environment variable that holds the password; it wins over password.",
    )
    name: str = Field("moodle", description="The database name ($CFG->dbname) of the Moodle site.")
    prefix: str = Field(
        "mdl_", pattern=r"^[A-Za-z0-9_]*$", description="The table prefix ($CFG->prefix) of the Moodle site."
    )
    dbschema: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_]*$",
        description="PostgreSQL only: the schema holding the site's tables when it is not the user's default "
        "(public), as Moodle's $CFG->dboptions['dbschema'].",
    )
    statement_timeout: int = Field(
        300,
        ge=0,
        description="Seconds the server has to answer each statement (and commit); past it the run stops, its batch "
        "rolled back, and the run lock is released. 0: wait for ever.",
    )
    sqlite_path: str = Field("sandbox.sqlite", description='The SQLite file, for driver "sqlite" only.')

    @model_validator(mode="before")
    @classmethod
    def _postgres_port(cls, data: Any) -> Any:
        """PostgreSQL's own port when a postgresql site's table gives none."""
        if isinstance(data, dict) and data.get("driver") == "postgresql" and "port" not in data:
            return {**data, "port": 5432}
        return data


class FileSettings(Section):
    """Where command files are read from, how they are read, and what a run leaves behind."""

    data_dir: str = Field(
        "data",
        description='Holds inbox/ (command files), archive/, reports/ and tryback/; e.g. "/var/lib/toolsync".',
    )
    encoding: Literal["auto", "utf-8", "iso-8859-1", "windows-1252"] = Field(
        "auto",
        description='"auto" reads UTF-8 and falls back to Windows-1252 (then ISO-8859-1) for files that are not UTF-8.',
    )
    separator: Literal[";", ",", "\t", "auto"] = Field(";", description='"auto" detects it from the header line.')
    comment_prefixes: list[str] = Field(
        default_factory=lambda: ["#", "//"],
        description="Lines starting with one of these (outside quoted values) are comments.",
    )
    ignore_unknown_columns: bool = Field(
        False,
        description="Columns an operation does not know are an error; when this is on (true), they are ignored.",
    )
    short_rows: Literal["accept", "fail"] = Field(
        "accept",
        description="A row with fewer values than the header, in the users, enrolments and groups files: "
        '"accept" reads its missing trailing cells as empty, as tool_sync does (the report names those lines); '
        '"fail" fails the row. The course and cohort files always fail such rows, as tool_sync does.',
    )
    report: bool = Field(True, description="Write a text report and its CSV twin to reports/ for every run.")
    tryback: bool = Field(
        True, description="Write the failed rows, in the source's own format, to tryback/ (ready to be run again)."
    )
    archive: Literal["move", "copy", "off"] = Field(
        "move", description="A processed command file is moved or copied to archive/, or left in place (off)."
    )
    archive_passwords: bool = Field(
        False,
        description="Keep the passwords in archived command files. Off (false): the archived copy of a file with a "
        "password column has those cells emptied, the rest as it was; its tryback keeps them, to be run again.",
    )
    group_readable: bool = Field(
        False,
        description="Let the owner's group read the data directory: folders 0750, files 0640. Off (false): folders "
        "0700 and files 0600, its owner's only; a run narrows what is wider.",
    )
    browse_dirs: list[str] = Field(
        default_factory=list,
        description="Folders besides inbox/ whose files the interface offers as command files "
        "(e.g. where exports are prepared).",
    )


class RunSettings(Section):
    """How runs write, and when they stop to ask first."""

    batch_size: int = Field(
        5000,
        ge=1,
        le=100_000,
        description="Rows per batch; each batch is one transaction. Read-only operations use at least 10000.",
    )
    safety_threshold: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="A run that would delete, unenrol or suspend more than this share (0 to 1) of the records it "
        "draws from stops before writing and asks for a confirmation (or --force on the command line). "
        "0 disables the check.",
    )
    safety_min_rows: int = Field(10, ge=0, description="... but only when it would remove at least this many records.")
    safety_max_rows: int = Field(
        0,
        ge=0,
        description="A run that would remove more than this many records stops too, whatever the share; 0: no limit.",
    )
    update_threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="A run that would update more than this share (0 to 1) of the records it draws from stops as the "
        "safety threshold does (0.75 stops a file that rewrites three accounts in four); 0 disables the check.",
    )
    update_max_rows: int = Field(0, ge=0, description="... or more than this many records; 0: no limit.")
    hold: Literal["cron", "always", "never"] = Field(
        "cron",
        description="A run stopped by a threshold or a source guard is held for approval (`toolsync held`, the "
        "dashboard): cron: runs of `toolsync cron`; always: also `toolsync run`; never: it only stops.",
    )
    hold_removals_only: bool = Field(
        False,
        description="A held run still creates and updates; only its removals wait for approval.",
    )
    row_guards: Literal["snapshot", "all"] = Field(
        "snapshot",
        description="Which runs the empty-file and guard_min_share guards hold to: snapshot (operations in snapshot "
        "mode, where a missing row removes its record) or all (also update files, for feeds sent whole every night).",
    )
    guard_min_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A file with fewer data rows than this share of the operation's last applied file is refused "
        "(a truncated export), as a file without data rows is (see row_guards); 0 disables the check.",
    )


class BridgeSettings(Section):
    """The bridge runs Moodle's own PHP for course delete, reset and templates, and user delete."""

    php: str = Field("php", description='The PHP command line, e.g. "php8.3" or "/usr/bin/php -d memory_limit=1G".')
    moodle_dir: str = Field("", description="The Moodle site's directory, holding config.php. Empty: no bridge.")
    run_as: str = Field(
        "", description='Run PHP as this user (through sudo -n -u), e.g. "www-data". Empty: as yourself.'
    )


class EventSettings(Section):
    """What Moodle's events would have done besides the rows: the standard log, welcome messages, observers."""

    acting_user: str = Field(
        "",
        description="Username recorded as the one who made the changes in Moodle's standard log (its Logs report). "
        "Empty: the site's main administrator.",
    )
    welcome_messages: bool = Field(
        True,
        description="Send the course welcome message of an enrolment method that has one, as Moodle's enrol_user() "
        "does, through the bridge after each batch commits. Needs the bridge.",
    )
    trigger: bool = Field(
        False,
        description="After each batch commits, have the bridge trigger Moodle's events for the changes, so that other "
        "plugins' observers run; Moodle then writes the log rows itself. Slower; needs the bridge.",
    )


class CronSettings(Section):
    """`toolsync cron`, called by the system crontab (see `toolsync crontab install`), runs every operation whose
    schedule is due."""

    order: list[str] = Field(
        default_factory=list,
        description="Operations in run order; empty: the original's dependency order, as `toolsync run` lists them.",
    )
    timezone: str = Field(
        "", description='The IANA zone schedules are read in, e.g. "Europe/Paris"; empty: the system\'s.'
    )
    drop_dir: str = Field(
        "",
        description="A folder where the student information system drops command files (e.g. over SFTP): each cron "
        'call moves the complete ones into inbox/. Names starting with "." or "_" are left alone.',
    )
    settle_seconds: int = Field(60, ge=0, description="A dropped file is complete once unchanged for this long.")
    lock_files: list[str] = Field(
        default_factory=lambda: ["alock.txt"],
        description="While one of these is in drop_dir, the feeder is writing: nothing is taken.",
    )
    retention_days: int = Field(
        0,
        ge=0,
        description="Archives, reports and trybacks older than this many days are removed by cron; 0 keeps everything.",
    )
    crontab_command: str = Field(
        "crontab", description="The command that reads (-l) and replaces (-) the user's crontab."
    )


class NotifySettings(Section):
    """After an unattended (cron) run: mail the summary and the report, and/or run a command."""

    when: Literal["never", "failures", "always"] = Field(
        "failures", description="Which unattended runs are notified: none, those with failures, or all."
    )
    smtp_host: str = Field("", description="The mail server; empty: no mail.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Its TCP port.")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        "none", description="How the connection to the mail server is protected."
    )
    smtp_user: str = Field("", description="The user to log in as; empty: no login.")
    smtp_password_env: str = Field(
        "TOOLSYNC_SMTP_PASSWORD", description="The environment variable that holds the SMTP password."
    )
    sender: str = Field(
        "", description='The From address, e.g. "toolsync@moodle.example.edu"; empty: toolsync@ and this host\'s name.'
    )
    recipients: list[str] = Field(
        default_factory=list, description='Who gets the mail, e.g. ["moodle-admins@example.edu"].'
    )
    command: str = Field(
        "",
        description="A program given the summary on stdin and the report's path as argument, e.g. "
        '"/usr/local/bin/notify-chat".',
    )


class OperationSettings(Section):
    file: str = Field("", description="The operation's preselected command file, relative to inbox/.")
    schedule: str = Field("", description="A cron expression for `toolsync cron`; empty: not scheduled.")
    schedule_enabled: bool = Field(
        True, description="Whether `toolsync cron` runs the schedule; false keeps it without running it."
    )

    @field_validator("schedule")
    @classmethod
    def _cron_expression(cls, value: str) -> str:
        try:
            return check_expression(value) if value else value
        except ScheduleProblem as problem:
            raise ValueError(str(problem)) from None


# An operation's table overrides `file` with its own default only: the key's description stays OperationSettings'.


class FeedSettings(OperationSettings):
    """An operation whose rows write to Moodle by themselves (not through Moodle's PHP): it can diff."""

    diff: bool = Field(
        False,
        description="Only the rows changed since the operation's last applied file are resolved and written; the "
        "others are reported unchanged without a database round trip.",
    )


class SnapshotSettings(FeedSettings):
    """An operation whose file can be the whole truth for its scope (engine/snapshot/)."""

    mode: Literal["update", "snapshot"] = Field(
        "update",
        description="snapshot: the file is the whole truth for its scope; what toolsync manages (the ownership "
        "ledger) and the file no longer names gets snapshot_action.",
    )


class CheckSettings(OperationSettings):
    file: str = "courses.csv"
    identifier: CourseKey = "shortname"


class DeleteCoursesSettings(OperationSettings):
    file: str = "deletecourses.csv"
    identifier: CourseKey = "shortname"


class ResetCoursesSettings(OperationSettings):
    file: str = "resetcourses.csv"
    identifier: CourseKey = "shortname"


class CoursesSettings(FeedSettings):
    file: str = "uploadcourses.csv"
    identifier: CourseKey = "shortname"
    category_identifier: Literal["idname", "idnumber"] = Field(
        "idname", description="idname: a numeric id or a /-path of names; idnumber: the idnumber."
    )
    forceupdate: bool = Field(False, description="Update existing courses, with the file's non-empty cells only.")
    protect_category: bool = Field(False, description="Updates never move a course to another category.")
    new_categories_visible: bool = Field(True, description="Categories created from paths are visible.")
    template_mode: Literal["none", "add", "replace"] = Field(
        "none", description="Template content for existing courses: none, add or replace."
    )


class MetaCoursesSettings(FeedSettings):
    file: str = "metacourses.csv"
    identifier: CourseKey = "shortname"


class UsersSettings(SnapshotSettings):
    file: str = "userimport.csv"
    primary_identity: UserKey = Field("idnumber", description="Also used by deleteusers and suspendusers.")
    course_identity: CourseKey = Field("shortname", description="What the courseN values name.")
    allow_rename: bool = Field(False, description="Accept the oldusername column (renames).")
    create_passwords: bool = Field(
        False, description="An empty password on create: Moodle's cron generates and mails one."
    )
    protect_emails: bool = Field(True, description="Never change the e-mail of an existing account.")
    password_rounds: Literal[5000, 10000] = Field(
        5000, description="SHA-512 crypt rounds: 5000 as Moodle's upload tool, or 10000."
    )
    password_pepper_env: str = Field(
        "TOOLSYNC_PASSWORD_PEPPER",
        description="The environment variable holding the site's latest password pepper ($CFG->passwordpeppers), "
        "if it has one: a secret that does not belong in the configuration file.",
    )
    snapshot_action: Literal["suspend", "delete", "nothing"] = Field(
        "suspend", description="In snapshot mode, what an account the file no longer names gets."
    )


class DeleteUsersSettings(FeedSettings):
    file: str = "userdelete.csv"


class SuspendUsersSettings(FeedSettings):
    file: str = "usersuspend.csv"


class EnrolsSettings(SnapshotSettings):
    file: str = "enrols.csv"
    course_identifier: CourseKey = "id"
    user_identifier: UserKey = "id"
    default_cmd: Literal["add", "del", "delete", "shift", "enable", "disable"] = Field(
        "add", description="The command of a file without a cmd column."
    )
    enable_on_disabled: bool = Field(
        False, description="Enrol through a disabled instance of the method (and enable it)."
    )
    protect_groups: bool = Field(
        False,
        description="Memberships this file makes are recorded as protected in the data directory (Moodle's rows keep "
        "component ''): gdel and greplace only remove protected ones.",
    )
    snapshot_action: Literal["unenrol", "suspend", "remove_role"] = Field(
        "unenrol", description="In snapshot mode, what an enrolment the file no longer names gets."
    )


class GroupsSettings(FeedSettings):
    file: str = "groups.csv"
    course_identifier: CourseKey = "id"
    group_identifier: GroupKey = "id"
    grouping_identifier: GroupKey = "id"


class GroupMembersSettings(SnapshotSettings):
    file: str = "groupmembers.csv"
    course_identifier: CourseKey = "id"
    group_identifier: GroupKey = "id"
    user_identifier: UserKey = "id"
    purge_empty: Literal["off", "groups", "groups_and_groupings"] = Field(
        "off", description="After the run, delete the empty groups (and groupings) of the file's courses only."
    )


class CohortsSettings(SnapshotSettings):
    file: str = "cohorts.csv"
    cohort_identifier: GroupKey = Field(
        "idnumber", description="The key column is c<identifier>: cid, cidnumber or cname."
    )
    user_identifier: UserKey = "idnumber"
    autocreate: bool = Field(True, description="add: create a missing cohort (else the row fails).")


class CohortsCoursesSettings(FeedSettings):
    file: str = "cohortscourses.csv"
    cohort_identifier: GroupKey = "idnumber"
    course_identifier: CourseKey = "idnumber"
    role_identifier: Literal["id", "shortname"] = "shortname"


class PicturesSettings(OperationSettings):
    file: str = Field("userpictures_", description="A plain prefix: every <prefix>*.zip file of the inbox.")
    user_field: Literal["id", "idnumber", "username", "hostedusername", "email"] = Field(
        "username", description="hostedusername is username@mnethostid."
    )
    overwrite: bool = Field(True, description="Replace pictures users already have; off (false) skips them.")
    moodle_data_dir: str = Field("", description="The site's $CFG->dataroot (moodledata): pictures go to its filedir/.")


class OperationsSettings(Section):
    """Identifier settings say which field a file's values name: course id/idnumber/shortname,
    user id/idnumber/username/email, group or grouping id/idnumber/name."""

    check: CheckSettings = Field(default_factory=CheckSettings)
    deletecourses: DeleteCoursesSettings = Field(default_factory=DeleteCoursesSettings)
    resetcourses: ResetCoursesSettings = Field(default_factory=ResetCoursesSettings)
    courses: CoursesSettings = Field(default_factory=CoursesSettings)
    metacourses: MetaCoursesSettings = Field(default_factory=MetaCoursesSettings)
    users: UsersSettings = Field(default_factory=UsersSettings)
    deleteusers: DeleteUsersSettings = Field(default_factory=DeleteUsersSettings)
    suspendusers: SuspendUsersSettings = Field(default_factory=SuspendUsersSettings)
    enrols: EnrolsSettings = Field(default_factory=EnrolsSettings)
    groups: GroupsSettings = Field(default_factory=GroupsSettings)
    groupmembers: GroupMembersSettings = Field(default_factory=GroupMembersSettings)
    cohorts: CohortsSettings = Field(default_factory=CohortsSettings)
    cohortscourses: CohortsCoursesSettings = Field(default_factory=CohortsCoursesSettings)
    pictures: PicturesSettings = Field(default_factory=PicturesSettings)


class Settings(Section):
    """Relative paths are relative to the configuration file's folder; keep the file mode 600 if it holds a password."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    cron: CronSettings = Field(default_factory=CronSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)


class ConfigError(Exception):
    """A configuration problem, worded for the administrator (names the file and the key)."""


@dataclass
class Config:
    """Validated settings plus the raw document they came from, so that saving loses nothing."""

    path: Path
    settings: Settings
    raw: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.settings.files.data_dir)

    @property
    def database_password(self) -> str:
        db = self.settings.database
        return os.environ.get(db.password_env, db.password) if db.password_env else db.password

    def operation(self, name: str) -> OperationSettings:
        settings: OperationSettings = getattr(self.settings.operations, name)
        return settings

    def set(self, dotted_key: str, value: Any) -> None:
        """Change one setting (validated) in both the model and the raw document."""
        *parents, leaf = dotted_key.split(".")
        candidate = _with_value(self.raw, parents, leaf, value)
        self.settings = _validate(candidate, self.path)
        self.raw = candidate

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".toml.tmp")
        # Private before the first byte (it may hold the database password); fchmod: a left-over tmp keeps its mode.
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            tomli_w.dump(self.raw, out)
        tmp.replace(self.path)


def _with_value(raw: dict[str, Any], parents: list[str], leaf: str, value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = dict(raw)
    node = copy
    for key in parents:
        child = dict(node.get(key, {}))
        node[key] = child
        node = child
    node[leaf] = value
    return copy


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if key.endswith("password"):  # a secret is never quoted, whatever its type
        return f"{key}: {error['msg']} (the value given is not shown)"
    given = error.get("input")
    return f"{key}: {error['msg']} (got {given!r})"


def _validate(raw: dict[str, Any], path: Path) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(e)) for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def _unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    found = [f"{prefix}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unknown_keys(value, f"{prefix}{name}.")
    return found


def load_config(path: Path) -> Config:
    try:
        with path.open("rb") as source:
            raw = tomllib.load(source)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    settings = _validate(raw, path)
    warnings = [f"{path}: unknown key {key} is kept but not used" for key in _unknown_keys(settings)]
    mode = path.stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH) and settings.database.password:
        warnings.append(f"{path} holds a database password and is readable by others: chmod 600 it")
    return Config(path=path, settings=settings, raw=raw, warnings=warnings)


def new_config(path: Path, raw: dict[str, Any]) -> Config:
    """A config from a document that is about to be written (e.g. by `sandbox init`)."""
    return Config(path=path, settings=_validate(raw, path), raw=raw)
