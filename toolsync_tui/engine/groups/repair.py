"""`toolsync groups repair-components`: the group memberships whose component is no plugin of the site, repaired.

tool_sync, and toolsync before it recorded protection in its data directory, wrote `groups_members.component =
'tool_sync'` on the memberships of the group members file and of the enrolments file with protect_groups. tool_sync is
not installed on the site: Moodle's groups_add_member() refuses that component, the course's Group members page fails
on such a row ("Invalid component used in plugin/component_callback(): tool_sync") and shows "Added by
[[pluginname]]". A plugin uninstalled since leaves the same kind of row.

The repair gives every membership whose component is neither '', a core subsystem nor an installed plugin (a
`version` in config_plugins) Moodle's own component '' and itemid 0, in one transaction; then, once it committed, it
records those that were 'tool_sync' as protected in the data directory (datadir/protected_groups.py): they are
toolsync's, and the enrolments file's greplace and gdel with protect_groups go on treating them as such. Those of
another missing plugin become plain memberships (made by hand, as far as Moodle and toolsync are concerned).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from toolsync_tui.engine.datadir.protected_groups import ProtectedMemberships, StateProblem
from toolsync_tui.engine.moodle import groups as gm
from toolsync_tui.engine.moodle.gateway import MoodleGateway
from toolsync_tui.engine.words import plural

NAME = "groups repair-components"


@dataclass(frozen=True)
class ComponentRepair:
    """The memberships found (gm.FOREIGN_SCHEMA) and, after a real run, how many were changed."""

    found: pl.DataFrame
    dry_run: bool
    changed: int = 0
    recorded: int = 0  # memberships recorded as protected
    problem: str | None = None  # the state could not be written (the rows are repaired all the same)

    @property
    def empty(self) -> bool:
        return self.found.is_empty()

    @property
    def protectable(self) -> pl.DataFrame:
        """The memberships toolsync made (component 'tool_sync'): protected once repaired."""
        return self.found.filter(pl.col("component") == gm.LEGACY_COMPONENT)

    def lines(self) -> list[str]:
        """One line per group and component, by course, group and component."""
        if self.empty:
            return []
        per_group = (
            self.found.group_by("courseid", "shortname", "groupid", "groupname", "component", maintain_order=True)
            .agg(pl.len().alias("count"))
            .sort("courseid", "groupid", "component", nulls_last=True)
        )
        lines = []
        for courseid, shortname, groupid, groupname, component, count in per_group.iter_rows():
            group = f"group '{groupname}' (id {groupid})" if groupname is not None else f"group id {groupid} (gone)"
            where = f" of course '{shortname}' (id {courseid})" if courseid is not None else ""
            what = f"{plural(count, 'membership')} of component '{component}'"
            ours = component == gm.LEGACY_COMPONENT
            if self.dry_run:
                lines.append(
                    f"would repair: {group}{where}: {what}" + (" (then protected by toolsync)" if ours else "")
                )
            else:
                done = " set to '' (itemid 0)" + (", protected by toolsync" if ours else "")
                lines.append(f"repaired: {group}{where}: {what}{done}")
        return lines

    def summary(self, state: ProtectedMemberships) -> str:
        if self.empty:
            return f"{NAME}: no membership holds a component that is no installed plugin; nothing to repair"
        per_component = ", ".join(
            f"{component}: {count}"
            for component, count in self.found.group_by("component").agg(pl.len()).sort("component").iter_rows()
        )
        groups = plural(self.found["groupid"].n_unique(), "group")
        if self.dry_run:
            memberships = plural(self.found.height, "membership")
            return (
                f"{NAME} (dry run): {memberships} in {groups} hold a component that is no installed plugin "
                f"({per_component}); nothing was changed"
            )
        text = (
            f"{NAME}: {plural(self.changed, 'membership')} in {groups} set to component '' and "
            f"itemid 0 ({per_component})"
        )
        if self.changed < self.found.height:
            text += f"; {self.found.height - self.changed} changed meanwhile and left alone"
        if self.recorded:
            text += f"; {self.recorded} recorded as protected in {state.path}"
        return text


async def find_foreign(gateway: MoodleGateway) -> ComponentRepair:
    """What a repair would change (a dry run): reads only."""
    async with gateway.reading() as conn:
        return ComponentRepair(await gm.foreign_memberships(gateway, conn), dry_run=True)


async def repair_components(gateway: MoodleGateway, state: ProtectedMemberships) -> ComponentRepair:
    """Repair the memberships in one transaction, then record the 'tool_sync' ones as protected. The caller checks
    the state beforehand (state.check()); should it still fail to be written, `problem` says so: the rows are
    repaired in Moodle, not recorded."""
    async with gateway.transaction() as conn:
        found = await gm.foreign_memberships(gateway, conn)
        components = sorted(set(found["component"].to_list()))
        changed = await gm.clear_components(gateway, conn, found["id"].to_list(), components) if components else 0
    repair = ComponentRepair(found, dry_run=False, changed=changed)
    ours = repair.protectable
    state.begin()
    state.record(ours.select("groupid", "userid", pl.col("id").alias("memberid")), "repair")
    try:
        recorded = state.commit()
    except StateProblem as exc:
        problem = (
            f"{exc}: the memberships were repaired in Moodle, but the {ours.height} of component "
            f"'{gm.LEGACY_COMPONENT}' are not recorded as protected"
        )
        return ComponentRepair(found, dry_run=False, changed=changed, problem=problem)
    return ComponentRepair(found, dry_run=False, changed=changed, recorded=recorded)
