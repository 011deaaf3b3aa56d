"""What a run changed in Moodle, recorded as it writes (capture.py, journal.py), and its undo (undo.py)."""
