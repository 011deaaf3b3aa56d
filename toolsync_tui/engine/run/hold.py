"""Approving a held run: its file runs through the normal pipeline, with force (the administrator has seen what it
would do): its own report, tryback and archive, its line in the run log. The hold is removed once the run went
through; a run that could not happen, or was cancelled or interrupted, leaves it held (approve it again)."""

from __future__ import annotations

import threading

from toolsync_tui.config import Config
from toolsync_tui.engine.datadir.held import HeldProblem, HeldRuns
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.run.pipeline import ProgressCallback, RunProblem, RunResult, run_operation


async def approve_held(
    config: Config,
    gateway: MoodleGateway,
    held_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[RunResult]:
    """Run held run `held_id` (its id or a unique prefix of it); RunProblem when there is none, or its file is gone."""
    runs = HeldRuns(config.data_dir)
    try:
        held = runs.find(held_id)
    except HeldProblem as exc:
        raise RunProblem(str(exc)) from None
    if not held.file.is_file():
        raise RunProblem(f"held run {held.short_id}: its file {held.file} is gone; discard it")
    result = await run_operation(
        config, gateway, held.operation, held.file, force=True, on_progress=on_progress, cancel=cancel
    )
    if not (result.cancelled or result.interrupted):
        runs.release(held.id)
        result.notes.append(f"held run {held.short_id} approved and run; the hold is removed")
    return [result]
