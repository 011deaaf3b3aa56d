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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toolsync_tui.engine.unattended.schedules import ScheduleProblem, check_expression

CourseKey = Literal["id", "idnumber", "shortname"]
UserKey = Literal["id", "idnumber", "username", "email"]
GroupKey = Literal["id", "idnumber", "name"]


class Section(BaseModel):
    model_config = ConfigDict(extra="allow", validate_assignment=True)


class DatabaseSettings(Section):
    driver: Literal["mariadb", "sqlite"] = "mariadb"
    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    socket: str = ""
    user: str = "moodle"
    password: str = ""
    password_env: str = "TOOLSYNC_DB_PASSWORD"
    name: str = "moodle"
    prefix: str = Field("mdl_", pattern=r"^[A-Za-z0-9_]*$")
    sqlite_path: str = "sandbox.sqlite"


class FileSettings(Section):
    data_dir: str = "data"
    encoding: Literal["auto", "utf-8", "iso-8859-1", "windows-1252"] = "auto"
    separator: Literal[";", ",", "\t", "auto"] = ";"
    comment_prefixes: list[str] = Field(default_factory=lambda: ["#", "//"])
    ignore_unknown_columns: bool = False
    report: bool = True
    tryback: bool = True
    archive: Literal["move", "copy", "off"] = "move"
    browse_dirs: list[str] = Field(default_factory=list)  # folders besides the inbox the files screen offers


class RunSettings(Section):
    batch_size: int = Field(5000, ge=1, le=100_000)
    safety_threshold: float = Field(0.1, ge=0.0, le=1.0)
    safety_min_rows: int = Field(10, ge=0)


class BridgeSettings(Section):
    php: str = "php"
    moodle_dir: str = ""
    run_as: str = ""


class CronSettings(Section):
    order: list[str] = Field(default_factory=list)  # operations in run order; empty: the original's dependency order
    timezone: str = ""  # IANA zone the schedules are read in, e.g. "Europe/Paris"; empty: the system's
    drop_dir: str = ""  # where the information system drops command files; each cron call moves them to inbox/
    settle_seconds: int = Field(60, ge=0)  # a dropped file unchanged for this long is complete
    lock_files: list[str] = Field(default_factory=lambda: ["alock.txt"])  # nothing is taken while one is there
    retention_days: int = Field(0, ge=0)  # archives, reports, trybacks older than this are removed; 0 keeps all
    crontab_command: str = "crontab"  # the command that reads (-l) and replaces (-) the user's crontab


class NotifySettings(Section):
    when: Literal["never", "failures", "always"] = "failures"  # after an unattended run
    smtp_host: str = ""  # empty: no mail
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_user: str = ""
    smtp_password_env: str = "TOOLSYNC_SMTP_PASSWORD"
    sender: str = ""
    recipients: list[str] = Field(default_factory=list)
    command: str = ""  # a program given the summary on stdin and the report's path as argument


class OperationSettings(Section):
    file: str = ""
    schedule: str = ""  # a cron expression for `toolsync cron`; empty: not scheduled
    schedule_enabled: bool = True  # false: the schedule is kept but `toolsync cron` does not run it

    @field_validator("schedule")
    @classmethod
    def _cron_expression(cls, value: str) -> str:
        try:
            return check_expression(value) if value else value
        except ScheduleProblem as problem:
            raise ValueError(str(problem)) from None


class CheckSettings(OperationSettings):
    file: str = "courses.csv"
    identifier: CourseKey = "shortname"


class DeleteCoursesSettings(OperationSettings):
    file: str = "deletecourses.csv"
    identifier: CourseKey = "shortname"


class ResetCoursesSettings(OperationSettings):
    file: str = "resetcourses.csv"
    identifier: CourseKey = "shortname"


class CoursesSettings(OperationSettings):
    file: str = "uploadcourses.csv"
    identifier: CourseKey = "shortname"
    category_identifier: Literal["idname", "idnumber"] = "idname"
    forceupdate: bool = False  # update existing courses (only the file's non-empty cells)
    protect_category: bool = False  # an update never moves a course to another category
    new_categories_visible: bool = True
    template_mode: Literal["none", "add", "replace"] = "none"  # template content for existing courses


class MetaCoursesSettings(OperationSettings):
    file: str = "metacourses.csv"
    identifier: CourseKey = "shortname"


class UsersSettings(OperationSettings):
    file: str = "userimport.csv"
    primary_identity: UserKey = "idnumber"
    course_identity: CourseKey = "shortname"
    allow_rename: bool = False
    create_passwords: bool = False
    protect_emails: bool = True
    password_rounds: Literal[5000, 10000] = 5000
    password_pepper_env: str = "TOOLSYNC_PASSWORD_PEPPER"


class DeleteUsersSettings(OperationSettings):
    file: str = "userdelete.csv"


class SuspendUsersSettings(OperationSettings):
    file: str = "usersuspend.csv"


class EnrolsSettings(OperationSettings):
    file: str = "enrols.csv"
    course_identifier: CourseKey = "id"
    user_identifier: UserKey = "id"
    default_cmd: Literal["add", "del", "delete", "shift", "enable", "disable"] = "add"
    enable_on_disabled: bool = False
    protect_groups: bool = False


class GroupsSettings(OperationSettings):
    file: str = "groups.csv"
    course_identifier: CourseKey = "id"
    group_identifier: GroupKey = "id"
    grouping_identifier: GroupKey = "id"


class GroupMembersSettings(OperationSettings):
    file: str = "groupmembers.csv"
    course_identifier: CourseKey = "id"
    group_identifier: GroupKey = "id"
    user_identifier: UserKey = "id"
    purge_empty: Literal["off", "groups", "groups_and_groupings"] = "off"


class CohortsSettings(OperationSettings):
    file: str = "cohorts.csv"
    cohort_identifier: GroupKey = "idnumber"
    user_identifier: UserKey = "idnumber"
    autocreate: bool = True  # add: create a cohort the file names that does not exist


class CohortsCoursesSettings(OperationSettings):
    file: str = "cohortscourses.csv"
    cohort_identifier: GroupKey = "idnumber"
    course_identifier: CourseKey = "idnumber"
    role_identifier: Literal["id", "shortname"] = "shortname"


class PicturesSettings(OperationSettings):
    file: str = "userpictures_"  # a plain prefix: every <prefix>*.zip of the inbox
    user_field: Literal["id", "idnumber", "username", "hostedusername", "email"] = "username"
    overwrite: bool = True  # replace a user's existing picture
    moodle_data_dir: str = ""  # the site's $CFG->dataroot, whose filedir/ receives the pictures


class OperationsSettings(Section):
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
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    files: FileSettings = Field(default_factory=FileSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
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
        with tmp.open("wb") as out:
            tomli_w.dump(self.raw, out)
        os.chmod(tmp, 0o600)
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
