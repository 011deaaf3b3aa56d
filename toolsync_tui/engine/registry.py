"""The operations of the command line and the interface, in the original's dependency order.

Registered by name and where their class lives, imported on first use: a headless run imports its own operation
only (a users file never loads Pillow, the pictures' dependency), while the interface, which lists titles, imports
them all. The name is written here and on the class; tests/engine/test_registry.py checks that both agree.
"""

from __future__ import annotations

import importlib

from toolsync_tui.engine.run.operation import Operation

ENGINE = "toolsync_tui.engine"


class OperationInfo:
    """An operation as the command line and the interface list it: its title is its class's own.

    Made from the class itself, or from its name and where the class lives ("module:Class"), imported on first use.
    """

    def __init__(self, implementation: type[Operation] | str, name: str | None = None) -> None:
        if isinstance(implementation, str):
            if name is None:
                raise ValueError("an operation registered by where its class lives needs its name")
            self._where: str | None = implementation
            self._implementation: type[Operation] | None = None
        else:
            self._where, self._implementation = None, implementation
        self.name = implementation.name if name is None and not isinstance(implementation, str) else str(name)

    def __repr__(self) -> str:
        return f"OperationInfo({self.name!r})"

    @property
    def implementation(self) -> type[Operation]:
        if self._implementation is None:
            assert self._where is not None
            module, _, attribute = self._where.partition(":")
            found = getattr(importlib.import_module(module), attribute)
            if not (isinstance(found, type) and issubclass(found, Operation)):
                raise TypeError(f"{self._where} is no Operation")
            self._implementation = found
        return self._implementation

    @property
    def title(self) -> str:
        return self.implementation.title


def _registered(*entries: tuple[str, str, str]) -> dict[str, OperationInfo]:
    return {name: OperationInfo(f"{ENGINE}.{module}:{cls}", name) for name, module, cls in entries}


OPERATIONS: dict[str, OperationInfo] = _registered(
    ("check", "courses.check", "CourseExistenceCheck"),
    ("deletecourses", "courses.delete", "DeleteCourses"),
    ("resetcourses", "courses.reset", "ResetCourses"),
    ("courses", "courses.operation", "CoursesOperation"),
    ("metacourses", "bindings.meta", "MetaBindingsOperation"),
    ("users", "users.operation", "UsersOperation"),
    ("deleteusers", "users.lists", "DeleteUsers"),
    ("suspendusers", "users.lists", "SuspendUsers"),
    ("enrols", "enrolments.operation", "EnrolsOperation"),
    ("groups", "groups.operation", "GroupsOperation"),
    ("groupmembers", "groups.members", "GroupMembersOperation"),
    ("cohorts", "cohorts.operation", "CohortsOperation"),
    ("cohortscourses", "bindings.cohort", "CohortBindingsOperation"),
    ("pictures", "pictures.operation", "PicturesOperation"),
)

__all__ = ["OPERATIONS", "Operation", "OperationInfo"]
