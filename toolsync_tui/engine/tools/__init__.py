"""Command-line tools beside the runs: generated delete and reset files, empty categories cleaned."""
