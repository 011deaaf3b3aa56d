"""What Moodle's PHP APIs would write, in SQL: knows tables, never files, rows or settings."""
