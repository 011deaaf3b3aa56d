"""The course file's parts: site settings, cell values, the plan of a round of rows, the writes, teacher accounts."""
