"""The projection that reduces a model's embeddings for monitoring: fitted with the version's reference,
applied by the service to every embedding it logs. numpy only, for the serving process."""

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

PROJECTION_FILE = "projection.npz"  # in the reference folder, and beside a packaged model


@dataclass(frozen=True)
class Projection:
    """Principal components of the reference embeddings: (N, D) embeddings to (N, dims) coordinates."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (dims, D)
    explained: float  # share of the reference's embedding variance the components keep

    @classmethod
    def fit(cls, embeddings: np.ndarray, dims: int) -> "Projection":
        mean = embeddings.mean(axis=0)
        _, singular, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
        dims = min(dims, len(singular))
        variance = singular**2
        explained = float(variance[:dims].sum() / variance.sum()) if variance.sum() > 0 else 1.0
        return cls(mean=mean.astype(np.float32), components=vt[:dims].astype(np.float32), explained=explained)

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings - self.mean) @ self.components.T

    @property
    def dims(self) -> int:
        return len(self.components)

    @cached_property
    def fingerprint(self) -> str:
        """Names this projection in every logged row: embeddings compare only under the same projection (hashed
        once: the service names it in every row)."""
        return hashlib.sha256(self.mean.tobytes() + self.components.tobytes()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, components=self.components, explained=np.float32(self.explained))

    @classmethod
    def load(cls, path: Path) -> "Projection":
        with np.load(path) as saved:
            return cls(mean=saved["mean"], components=saved["components"], explained=float(saved["explained"]))
