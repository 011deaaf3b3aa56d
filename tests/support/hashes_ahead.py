"""What the work ahead of a head start finished (engine/moodle/password_pool.py), to compare with what was stored."""

from __future__ import annotations

from toolsync_tui.engine.moodle.password_pool import HashesAhead


def made_ahead(ahead: HashesAhead) -> set[str]:
    """Every hash the work ahead finished."""
    finished = [c for c in ahead._chunks if c.done() and not c.cancelled() and c.exception() is None]
    return {result for chunk in finished for result in chunk.result()[1] if isinstance(result, str)}
