"""DIMEE for three tiers: a confidence cascade whose thresholds are learned online, and a cluster router.

The device hosts blocks 1..m, the edge m+1..e, the cloud e+1..L. A sample
exits on the device if C_m > α_d, else on the edge if C_e > α_e, else in the
cloud at the final exit. Each arm is a pair (α_d, α_e) from a grid; UCB learns
the pair maximising C_exit − μ·cost (see :mod:`splitexit.policies.splitee`). With α_e = 1
the edge could never answer, so it relays the sample straight to the cloud.

The **router** groups samples into clusters by a cheap label-free embedding of
the input the device holds before any block runs (:func:`embed`),
with k-means fitted on the first ``calibration`` samples, and learns one
cascade per cluster, so easy kinds of input settle on the device and hard ones
go straight to the cloud. During calibration the shared cascade decides.

Pure Python + numpy, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from splitexit.policies.chain import Chain
from splitexit.policies.costs import CostModel
from splitexit.policies.plan import Plan
from splitexit.policies.splitee import Arm, BanditPolicy
from splitexit.shared.tiers import Tier


def cascade_plan(chain: Chain, alpha_d: float, alpha_e: float) -> Plan:
    """α_d at the device's last exit m, α_e at the edge's last exit e, no other early exit."""
    m, e = chain.last_exit(Tier.DEVICE), chain.last_exit(Tier.EDGE)
    thresholds = [1.0] * chain.num_blocks
    thresholds[m - 1] = alpha_d
    if e < chain.num_blocks:
        thresholds[e - 1] = alpha_e
    skip_edge = alpha_e >= 1.0 and chain.resumes(Tier.CLOUD, m + 1)
    return Plan("", tuple(thresholds), {Tier.EDGE: m} if skip_edge else {})


def cascade_arms(chain: Chain, grid: Sequence[float]) -> list[Arm]:
    """Every pair (α_d, α_e) of grid values."""
    return [Arm(f"α_d={a:.2f} α_e={b:.2f}", cascade_plan(chain, a, b)) for a in grid for b in grid]


def embed(x: np.ndarray, cells: int = 4) -> np.ndarray:
    """A cheap, label-free description of a block-1 input (batch 1), for the router.

    An image ``[1, C, H, W]`` becomes its mean intensity on a ``cells`` x ``cells``
    grid per channel; token ids become a hashed bag of tokens (``cells``² bins);
    anything else, the means of ``cells``² equal chunks. Always float64 and
    computed on a fresh copy, so the same input gives the same bits everywhere.
    """
    if x.ndim == 4:
        image = x[0].astype(np.float64)
        row_starts, row_sizes = _split(image.shape[1], cells)
        col_starts, col_sizes = _split(image.shape[2], cells)
        sums = np.add.reduceat(np.add.reduceat(image, row_starts, axis=1), col_starts, axis=2)
        cell_means: np.ndarray = (sums / np.outer(row_sizes, col_sizes)).reshape(-1)
        return cell_means
    flat = x.reshape(-1)
    if np.issubdtype(flat.dtype, np.integer):
        counts = np.bincount(flat.astype(np.int64) % cells**2, minlength=cells**2).astype(np.float64)
        shares: np.ndarray = counts / max(counts.sum(), 1.0)
        return shares
    means: np.ndarray = np.array([chunk.mean() for chunk in np.array_split(flat.astype(np.float64), cells**2)])
    return means


def _split(length: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and size of ``parts`` near-equal chunks of ``length`` (the first ones one longer, as
    ``np.array_split``)."""
    sizes = np.full(parts, length // parts) + (np.arange(parts) < length % parts)
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes


def nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the closest centroid (squared Euclidean distance) for every row of ``points``."""
    distances = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    closest: np.ndarray = distances.argmin(axis=1)
    return closest


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 100) -> np.ndarray:
    """Lloyd's algorithm from a seeded k-means++ start; the ``[k, dims]`` centroids.

    k-means++ draws each next start point with probability proportional to its
    squared distance from the nearest start chosen so far. An emptied cluster
    keeps its centroid.
    """
    if len(points) < k:
        raise ValueError(f"k-means needs at least k={k} points, got {len(points)}")
    rng = np.random.default_rng(seed)
    centroids = points[[rng.integers(len(points))]]
    while len(centroids) < k:
        d2 = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).min(axis=1)
        pick = rng.choice(len(points), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(points))
        centroids = np.vstack([centroids, points[pick]])
    for _ in range(iterations):
        labels = nearest(points, centroids)
        updated = np.array(
            [points[labels == j].mean(axis=0) if (labels == j).any() else centroids[j] for j in range(k)]
        )
        if np.array_equal(updated, centroids):
            break
        centroids = updated
    return centroids


class ClusterRouter(BanditPolicy):
    """DIMEE's router: group 0 is the shared cascade used while calibrating, groups 1..k the clusters."""

    needs_embedding = True

    def __init__(
        self,
        name: str,
        arms: Sequence[Arm],
        chain: Chain,
        *,
        costs: CostModel,
        clusters: int,
        calibration: int,
        seed: int,
        **bandit: Any,
    ) -> None:
        super().__init__(name, arms, chain, costs=costs, groups=clusters + 1, **bandit)
        if calibration < clusters:
            raise ValueError(f"calibration ({calibration}) needs at least as many samples as clusters ({clusters})")
        self.clusters = clusters
        self.calibration = calibration
        self.seed = seed
        self.embeddings: list[list[float]] = []  # the calibration stream, until the clusters are fitted
        self.centroids: np.ndarray | None = None

    def group_of(self, embedding: np.ndarray | None) -> int:
        assert embedding is not None, "the router plans from the sample's embedding (needs_embedding)"
        if self.centroids is not None:
            return 1 + int(nearest(embedding[None, :], self.centroids)[0])
        self.embeddings.append(embedding.tolist())
        if len(self.embeddings) >= self.calibration:
            self.centroids = kmeans(np.array(self.embeddings), self.clusters, self.seed)
            self.embeddings = []
        return 0

    def group_name(self, group: int) -> str:
        return "calibration" if group == 0 else f"cluster {group}"

    def state(self) -> dict[str, Any]:
        return {**super().state(), "calibrated": self.centroids is not None}

    def to_dict(self) -> dict[str, Any]:
        centroids = None if self.centroids is None else self.centroids.tolist()
        return {**super().to_dict(), "embeddings": self.embeddings, "centroids": centroids}

    def load_dict(self, state: Mapping[str, Any]) -> None:
        centroids = state["centroids"]
        if centroids is not None and np.shape(centroids)[0] != self.clusters:
            raise ValueError(f"saved state has {np.shape(centroids)[0]} clusters, {self.name} has {self.clusters}")
        super().load_dict(state)
        self.embeddings = [list(e) for e in state["embeddings"]]
        self.centroids = None if centroids is None else np.array(centroids, dtype=float)
