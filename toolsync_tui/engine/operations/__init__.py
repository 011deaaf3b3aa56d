"""The operations of the command line and the interface, in the original's dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Operation
from .check import CourseExistenceCheck
from .cohort_bindings import CohortBindingsOperation
from .cohorts import CohortsOperation
from .courses import CoursesOperation
from .delete_courses import DeleteCourses
from .enrols import EnrolsOperation
from .group_members import GroupMembersOperation
from .groups import GroupsOperation
from .meta_bindings import MetaBindingsOperation
from .pictures import PicturesOperation
from .reset_courses import ResetCourses
from .user_lists import DeleteUsers, SuspendUsers
from .users import UsersOperation


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
