"""Whether a real run of an operation's inputs can remove or suspend anything: the interface then shows the dry run's
counts and asks first. The operation decides from the files' headers (Operation.may_destroy), as the safety pre-pass
of the run does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toolsync_tui.config import Config
from toolsync_tui.engine.connect import open_gateway
from toolsync_tui.engine.moodle.gateway import DatabaseError
from toolsync_tui.engine.registry import OPERATIONS
from toolsync_tui.engine.run.command_file import FileProblem
from toolsync_tui.engine.run.pipeline import make_operation


def can_destroy(name: str) -> bool:
    """Whether the operation has destructive actions at all: if not, no file of it can remove anything."""
    return bool(OPERATIONS[name].implementation.destructive_actions)


def may_destroy(config: Config, name: str, paths: Sequence[Path]) -> bool:
    """Reads each file's header (the whole file for its encoding: call it off the interface's loop). A file the run
    could not open, or a database it could not reach, stops that run before anything is written: False."""
    if not can_destroy(name):
        return False
    try:
        gateway = open_gateway(config)  # never connects here: the operation only needs the schema's declarations
    except DatabaseError:
        return False
    operation = make_operation(name, config, gateway)
    for path in paths:
        try:
            columns = operation.open_source(path).columns
        except FileProblem:
            continue
        if operation.may_destroy(columns):
            return True
    return False
