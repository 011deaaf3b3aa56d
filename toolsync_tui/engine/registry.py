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
    """An operation as the command line and the interface list it: its name and title are its class's own."""

    implementation: type[Operation]

    @property
    def name(self) -> str:
        return self.implementation.name

    @property
    def title(self) -> str:
        return self.implementation.title


OPERATIONS: dict[str, OperationInfo] = {
    operation.name: OperationInfo(operation)
    for operation in (
        CourseExistenceCheck,
        DeleteCourses,
        ResetCourses,
        CoursesOperation,
        MetaBindingsOperation,
        UsersOperation,
        DeleteUsers,
        SuspendUsers,
        EnrolsOperation,
        GroupsOperation,
        GroupMembersOperation,
        CohortsOperation,
        CohortBindingsOperation,
        PicturesOperation,
    )
}

__all__ = ["OPERATIONS", "Operation", "OperationInfo"]
