"""User pictures: reading them from zip archives, making Moodle's icons and storing them in the file pool."""
