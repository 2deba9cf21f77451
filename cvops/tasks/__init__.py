"""What differs per task, one folder each."""
