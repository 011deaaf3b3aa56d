"""After a run that changed cohort memberships, cohort bindings or meta bindings: Moodle's own sync materialises the
user enrolments, roles and groups they imply (CONTRACT §4), through the bridge when one is configured; otherwise the
report says that Moodle's scheduled tasks will do it, and how to do it at once."""

from __future__ import annotations

from collections.abc import Iterable

from toolsync_tui.engine.moodle.bridge.client import BridgeError, MoodleBridge

TASKS = {"cohort": "\\enrol_cohort\\task\\enrol_cohort_sync", "meta": "\\enrol_meta\\task\\enrol_meta_sync"}
LABELS = {"cohort": "cohort enrolments (enrol_cohort)", "meta": "course meta links (enrol_meta)"}


def _scheduled(plugin: str, courses: int) -> str:
    task = TASKS[plugin]
    return (
        f"{LABELS[plugin]} of {courses} course(s) changed: Moodle's scheduled task {task} (hourly) enrols and "
        f"unenrols their users; to do it now, on the Moodle server: php admin/cli/scheduled_task.php --execute='{task}'"
    )


async def sync_after_run(
    bridge: MoodleBridge | None,
    *,
    cohort_courses: Iterable[int] = (),
    meta_courses: Iterable[int] = (),
    disabled: Iterable[str] = (),
) -> list[str]:
    """Run the sync of these courses through the bridge; the report's notes. `disabled`: plugins the site has not
    enabled (their instances do nothing until they are)."""
    wanted = {"cohort": sorted(set(cohort_courses)), "meta": sorted(set(meta_courses))}
    wanted = {plugin: courses for plugin, courses in wanted.items() if courses}
    notes = [
        f"{LABELS[plugin]}: the plugin is disabled on this site, so these methods enrol nobody until it is enabled "
        "(Site administration > Plugins > Enrolments > Manage enrol plugins)"
        for plugin in sorted(set(disabled) & set(wanted))
    ]
    wanted = {plugin: courses for plugin, courses in wanted.items() if plugin not in set(disabled)}
    if not wanted:
        return notes
    if bridge is None:
        return notes + [_scheduled(plugin, len(courses)) for plugin, courses in wanted.items()]
    try:
        answers = await bridge.enrol_sync(wanted.get("cohort", ()), wanted.get("meta", ()))
    except BridgeError as exc:
        later = [_scheduled(plugin, len(courses)) for plugin, courses in wanted.items()]
        return [*notes, f"Moodle's enrolment sync did not run: {exc}", *later]
    for plugin, courses in wanted.items():
        if answers.get(plugin) == "synced":
            notes.append(f"{LABELS[plugin]} of {len(courses)} course(s) synchronised by Moodle through the bridge")
        else:
            notes.append(f"{LABELS[plugin]}: the bridge did not synchronise them ({answers.get(plugin, 'no answer')})")
    return notes
