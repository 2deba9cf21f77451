"""The registry's alias and approval names that other code relies on (ARCHITECTURE: names), importable where
MLflow is not installed (a bento's service)."""

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
