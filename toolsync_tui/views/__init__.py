"""What the screens and the command line say, without Textual: sizes, ages, site status, a run's words."""
