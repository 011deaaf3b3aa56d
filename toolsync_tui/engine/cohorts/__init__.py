"""The cohorts file (cohorts.csv): cohorts created, updated and deleted, members added and removed."""
