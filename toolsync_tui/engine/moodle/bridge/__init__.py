"""Moodle's own PHP, run on the site's server for what toolsync must not do in SQL."""
