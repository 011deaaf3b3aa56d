"""The operations of the command line and the interface, in the original's dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from toolsync_tui.engine.bindings.cohort import CohortBindingsOperation
from toolsync_tui.engine.bindings.meta import MetaBindingsOperation
from toolsync_tui.engine.cohorts.operation import CohortsOperation
from toolsync_tui.engine.courses.check import CourseExistenceCheck
from toolsync_tui.engine.courses.delete import DeleteCourses
from toolsync_tui.engine.courses.operation import CoursesOperation
from toolsync_tui.engine.courses.reset import ResetCourses
from toolsync_tui.engine.enrolments.operation import EnrolsOperation
from toolsync_tui.engine.groups.members import GroupMembersOperation
from toolsync_tui.engine.groups.operation import GroupsOperation
from toolsync_tui.engine.pictures.operation import PicturesOperation
from toolsync_tui.engine.run.operation import Operation
from toolsync_tui.engine.users.lists import DeleteUsers, SuspendUsers
from toolsync_tui.engine.users.operation import UsersOperation


@dataclass(frozen=True)
class OperationInfo:
    name: str
    title: str
    implementation: type[Operation]


OPERATIONS: dict[str, OperationInfo] = {
    info.name: info
    for info in (
        OperationInfo("check", "Course existence check", CourseExistenceCheck),
        OperationInfo("deletecourses", "Delete courses", DeleteCourses),
        OperationInfo("resetcourses", "Reset courses", ResetCourses),
        OperationInfo("courses", "Create and update courses", CoursesOperation),
        OperationInfo("metacourses", "Metacourse bindings", MetaBindingsOperation),
        OperationInfo("users", "Create and update users", UsersOperation),
        OperationInfo("deleteusers", "Delete users", DeleteUsers),
        OperationInfo("suspendusers", "Suspend users", SuspendUsers),
        OperationInfo("enrols", "Enrolments", EnrolsOperation),
        OperationInfo("groups", "Groups and groupings", GroupsOperation),
        OperationInfo("groupmembers", "Group members", GroupMembersOperation),
        OperationInfo("cohorts", "Cohorts", CohortsOperation),
        OperationInfo("cohortscourses", "Cohort to course bindings", CohortBindingsOperation),
        OperationInfo("pictures", "User pictures", PicturesOperation),
    )
}

__all__ = ["OPERATIONS", "Operation", "OperationInfo"]
