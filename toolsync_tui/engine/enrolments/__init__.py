"""The enrolments file (enrols.csv), piece by piece: reading its rows, choosing enrol instances, unenrolling,
role-only assignments, enrolment status, and the group commands. operations/enrols.py puts them together."""
