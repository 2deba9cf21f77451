"""Tasks defined outside cvops: the proof that adding a task means adding a folder."""
