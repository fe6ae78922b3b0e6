"""The concept vocabulary: K unit-norm centroids of region embeddings of the training photos
(spherical k-means), and the predictor that prices them. A region's concept is the centroid
nearest its embedding in cosine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ulic.semantics.predictor import ConceptPredictor


@dataclass
class Semantics:
    """What a model folder's semantics entry holds: centroids (K, DIM) and the predictor."""

    centroids: torch.Tensor
    predictor: ConceptPredictor

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def vocabulary_id(self) -> int:
        """One byte naming this vocabulary in an SRC section (the first byte of the sha256 of
        its float16 centroids and the predictor's integers)."""
        h = hashlib.sha256(self.centroids.half().numpy().tobytes())
        h.update(self.predictor.weight.astype("<i8").tobytes() + self.predictor.bias.astype("<i8").tobytes())
        return h.digest()[0]

    def assign(self, embeddings: torch.Tensor) -> np.ndarray:
        """(regions, DIM) unit-norm embeddings -> (regions,) concept ids."""
        return nearest(self.centroids, embeddings)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids.half().contiguous(), **self.predictor.tensors()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> Semantics:
        return cls(t["centroids"].float(), ConceptPredictor.from_tensors(t))


def nearest(centroids: torch.Tensor, embeddings: torch.Tensor) -> np.ndarray:
    """(regions, DIM) unit-norm embeddings -> (regions,) ids of the nearest of centroids (K, DIM)
    in cosine."""
    return (embeddings.float() @ centroids.float().T).argmax(1).numpy().astype(np.int64)


def spherical_kmeans(x: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """Unit-norm rows x (N, D) -> k unit-norm centroids (k, D): k-means++-style seeding by
    cosine distance, then Lloyd steps on the sphere; an emptied cluster is re-seeded with the
    row farthest from its centroid."""
    g = torch.Generator().manual_seed(seed)
    c = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    for _ in range(k - 1):
        d = (1 - x @ torch.stack(c).T).min(1).values.clamp_min(0)  # to the nearest chosen centroid
        c.append(x[torch.multinomial(d + 1e-12, 1, generator=g)].squeeze(0))
    cent = torch.stack(c)
    for _ in range(iterations):
        sim = x @ cent.T  # (N, k)
        ids = sim.argmax(1)
        new = torch.zeros_like(cent).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k)
        for j in torch.nonzero(counts == 0).flatten().tolist():
            new[j] = x[sim.max(1).values.argmin()]
        cent = F.normalize(new, dim=1)
    return cent
