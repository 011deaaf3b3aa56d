"""The events Moodle's APIs trigger for the changes toolsync writes, as their log rows show them.

Each constant is checked against its class's init() in Moodle 4.5 (lib/classes/event/*.php: crud, edulevel,
objecttable); eventname, component, target and action come from the class name (EventKind.of).
"""

from __future__ import annotations

from toolsync_tui.engine.moodle.event_log import LEVEL_OTHER, LEVEL_TEACHING, EventKind

# Users
USER_CREATED = EventKind.of("\\core\\event\\user_created", "c", LEVEL_OTHER, "user")
USER_UPDATED = EventKind.of("\\core\\event\\user_updated", "u", LEVEL_OTHER, "user")
USER_DELETED = EventKind.of("\\core\\event\\user_deleted", "d", LEVEL_OTHER, "user")
USER_PASSWORD_UPDATED = EventKind.of("\\core\\event\\user_password_updated", "u", LEVEL_OTHER, None)

# What delete_user() removes besides enrolments, roles and groups: grades and interests (tags)
GRADE_DELETED = EventKind.of("\\core\\event\\grade_deleted", "d", LEVEL_TEACHING, "grade_grades")
TAG_REMOVED = EventKind.of("\\core\\event\\tag_removed", "d", LEVEL_OTHER, "tag_instance")
TAG_DELETED = EventKind.of("\\core\\event\\tag_deleted", "d", LEVEL_OTHER, "tag")

# Courses and categories
COURSE_CREATED = EventKind.of("\\core\\event\\course_created", "c", LEVEL_TEACHING, "course")
COURSE_UPDATED = EventKind.of("\\core\\event\\course_updated", "u", LEVEL_TEACHING, "course")
COURSE_DELETED = EventKind.of("\\core\\event\\course_deleted", "d", LEVEL_TEACHING, "course")
COURSE_SECTION_CREATED = EventKind.of("\\core\\event\\course_section_created", "c", LEVEL_TEACHING, "course_sections")
COURSE_SECTION_UPDATED = EventKind.of("\\core\\event\\course_section_updated", "u", LEVEL_TEACHING, "course_sections")
COURSE_MODULE_CREATED = EventKind.of("\\core\\event\\course_module_created", "c", LEVEL_TEACHING, "course_modules")
COURSE_CATEGORY_CREATED = EventKind.of("\\core\\event\\course_category_created", "c", LEVEL_OTHER, "course_categories")
COURSE_CATEGORY_UPDATED = EventKind.of("\\core\\event\\course_category_updated", "u", LEVEL_OTHER, "course_categories")
COURSE_CATEGORY_DELETED = EventKind.of("\\core\\event\\course_category_deleted", "d", LEVEL_OTHER, "course_categories")

# Enrolment methods, enrolments and roles
ENROL_INSTANCE_CREATED = EventKind.of("\\core\\event\\enrol_instance_created", "c", LEVEL_OTHER, "enrol")
ENROL_INSTANCE_UPDATED = EventKind.of("\\core\\event\\enrol_instance_updated", "u", LEVEL_OTHER, "enrol")
ENROL_INSTANCE_DELETED = EventKind.of("\\core\\event\\enrol_instance_deleted", "d", LEVEL_OTHER, "enrol")
USER_ENROLMENT_CREATED = EventKind.of("\\core\\event\\user_enrolment_created", "c", LEVEL_OTHER, "user_enrolments")
USER_ENROLMENT_UPDATED = EventKind.of("\\core\\event\\user_enrolment_updated", "u", LEVEL_OTHER, "user_enrolments")
USER_ENROLMENT_DELETED = EventKind.of("\\core\\event\\user_enrolment_deleted", "d", LEVEL_OTHER, "user_enrolments")
ROLE_ASSIGNED = EventKind.of("\\core\\event\\role_assigned", "c", LEVEL_OTHER, "role")
ROLE_UNASSIGNED = EventKind.of("\\core\\event\\role_unassigned", "d", LEVEL_OTHER, "role")

# Groups and groupings
GROUP_CREATED = EventKind.of("\\core\\event\\group_created", "c", LEVEL_OTHER, "groups")
GROUP_UPDATED = EventKind.of("\\core\\event\\group_updated", "u", LEVEL_OTHER, "groups")
GROUP_DELETED = EventKind.of("\\core\\event\\group_deleted", "d", LEVEL_OTHER, "groups")
GROUP_MEMBER_ADDED = EventKind.of("\\core\\event\\group_member_added", "c", LEVEL_OTHER, "groups")
GROUP_MEMBER_REMOVED = EventKind.of("\\core\\event\\group_member_removed", "d", LEVEL_OTHER, "groups")
GROUPING_CREATED = EventKind.of("\\core\\event\\grouping_created", "c", LEVEL_OTHER, "groupings")
GROUPING_UPDATED = EventKind.of("\\core\\event\\grouping_updated", "u", LEVEL_OTHER, "groupings")
GROUPING_DELETED = EventKind.of("\\core\\event\\grouping_deleted", "d", LEVEL_OTHER, "groupings")
GROUPING_GROUP_ASSIGNED = EventKind.of("\\core\\event\\grouping_group_assigned", "c", LEVEL_OTHER, "groupings")
GROUPING_GROUP_UNASSIGNED = EventKind.of("\\core\\event\\grouping_group_unassigned", "d", LEVEL_OTHER, "groupings")

# Cohorts
COHORT_CREATED = EventKind.of("\\core\\event\\cohort_created", "c", LEVEL_OTHER, "cohort")
COHORT_UPDATED = EventKind.of("\\core\\event\\cohort_updated", "u", LEVEL_OTHER, "cohort")
COHORT_DELETED = EventKind.of("\\core\\event\\cohort_deleted", "d", LEVEL_OTHER, "cohort")
COHORT_MEMBER_ADDED = EventKind.of("\\core\\event\\cohort_member_added", "c", LEVEL_OTHER, "cohort")
COHORT_MEMBER_REMOVED = EventKind.of("\\core\\event\\cohort_member_removed", "d", LEVEL_OTHER, "cohort")
