"""Benchmarks of toolsync operations against a throwaway MariaDB loaded with the real Moodle dump.

Run `python -m benchmarks.run --help`; see benchmarks/README.md.
"""
