"""One run of one input, whatever the operation: reading, the pipeline, overlap, lock, log, report, preview."""
