"""The data directory: its names written and parsed in one place, history, catalog, drop directory, retention."""
