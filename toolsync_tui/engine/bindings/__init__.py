"""The cohort-course and metacourse binding files: enrolment methods bound to cohorts and courses."""
