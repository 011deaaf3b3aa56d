"""Helpers of the groups file and the group members file (the shared group API is ../group_membership.py)."""
