"""Running an operation on a file dropped in the inbox."""

from __future__ import annotations

from typing import Any

from tests.test_pipeline import inbox_file
from toolsync_tui.config import Config
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import RunResult, run_operation


def identifiers_by_id(config: Config, operation: str, *names: str) -> None:
    """Set the operation's identifier settings to their default (id), whatever the sandbox's configuration names."""
    for name in names:
        config.set(f"operations.{operation}.{name}", "id")


async def run_file(config: Config, gateway: MoodleGateway, operation: str, content: str, **options: Any) -> RunResult:
    """Run the operation on `content` as its inbox file (`<operation>.csv`)."""
    inbox_file(config, f"{operation}.csv", content)
    return await run_operation(config, gateway, operation, **options)


def report_of(result: RunResult) -> str:
    """The run's text report."""
    assert result.report_path is not None
    return result.report_path.read_text()
