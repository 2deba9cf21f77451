"""MLflow as the model store: tracking, versions, lineage, aliases, review, model cards (no torch)."""
