"""A row's parts that several families' files share: course enrolments, cohort memberships."""
