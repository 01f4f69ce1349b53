"""The job layer: the comparison every command runs, run records, and the report over many records."""
