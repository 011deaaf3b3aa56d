"""Users: checking and writing the rows of users files (create/update, delete, suspend)."""
