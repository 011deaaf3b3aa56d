"""Snapshot mode (`mode = "snapshot"`): the file is the whole truth for its scope.

What the ownership ledger says toolsync made or manages in that scope, that still exists in Moodle and that the file
no longer names, gets the operation's snapshot action, as command rows in the operation's own format added after the
file's last line (source.py): the same pipeline plans, dry-runs, reports, counts (safety threshold) and writes them.
"""
