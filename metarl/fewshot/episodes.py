"""The episodic sampler: N-way K-shot tasks with Q queries per class from a class array.

A split is a uint8 array (classes, drawings, H, W) with ink bright: a NumPy array, or a
tensor on the learner's device, where episodes are then gathered by index with no copy of
images from the host (only the indices travel). An episode draws
``ways`` distinct classes, then ``shots + queries`` distinct drawings of each; labels
``0..ways-1`` are assigned in the order the classes were drawn. Support and query sets
are shuffled so that sequence models (SNAIL) never see a class-sorted support set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from metarl.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Episodes:
    """A meta-batch of B episodes, images as float32 in [0, 1] with a channel dimension.

    Attributes:
        support_x: (B, N*K, 1, H, W).
        support_y: (B, N*K) int64 labels in ``0..N-1``.
        query_x: (B, N*Q, 1, H, W).
        query_y: (B, N*Q).
        ways, shots: N and K.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    ways: int
    shots: int

    def with_shots(self, shots: int) -> Episodes:
        """The same episodes keeping only the first ``shots`` support images of each class."""
        if not 1 <= shots <= self.shots:
            raise ValueError(f"shots must be in 1..{self.shots}, got {shots}")
        keep = rank_within_class(self.support_y, self.ways) < shots
        batch = len(keep)  # every episode keeps N * shots images, so rows stay equal
        return dataclasses.replace(
            self,
            support_x=self.support_x[keep].view(batch, -1, *self.support_x.shape[2:]),
            support_y=self.support_y[keep].view(batch, -1),
            shots=shots,
        )


def rank_within_class(labels: Tensor, ways: int) -> Tensor:
    """For each position, how many earlier positions hold the same label."""
    onehot = torch.nn.functional.one_hot(labels, ways)
    return ((onehot.cumsum(1) - 1) * onehot).sum(-1)


class EpisodeSampler:
    """Draws N-way K-shot episodes from the classes of one split.

    Args:
        images: uint8 array or tensor (classes, drawings, H, W); episodes come out on its
            device.
        ways, shots, queries: N, K and Q (queries per class; 0 for the online protocol,
            which reads the support set as a sequence and has no queries).
        split: the split's name, for error messages.

    Raises:
        UsageError: if the split has fewer than ``ways`` classes or fewer than
            ``shots + queries`` drawings per class.
    """

    def __init__(
        self, images: np.ndarray | Tensor, ways: int, shots: int, queries: int, split: str = "test"
    ) -> None:
        for name, value, least in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"{name} must be an integer >= {least}, got {value!r}")
        classes, drawings = images.shape[:2]
        if ways > classes:
            raise UsageError(
                f"{ways}-way episodes need {ways} classes, the {split} split has {classes}"
            )
        if shots + queries > drawings:
            raise UsageError(
                f"{shots} shots + {queries} queries need {shots + queries} images per class, "
                f"the {split} split has {drawings}"
            )
        self.images, self.ways, self.shots, self.queries = images, ways, shots, queries

    def sample(
        self, rng: np.random.Generator, batch: int = 1, shots: int | None = None
    ) -> Episodes:
        """``batch`` independent episodes drawn with ``rng``, with ``shots`` (at most the
        sampler's) support images per class instead of the sampler's K if given. The draws
        are made in NumPy, so the episodes are the same whatever device holds the images."""
        n, k, q = self.ways, self.shots if shots is None else shots, self.queries
        if not 1 <= k <= self.shots:
            raise ValueError(f"shots must be in 1..{self.shots}, got {shots}")
        classes, drawings = self.images.shape[:2]
        picked = np.stack([rng.choice(classes, n, replace=False) for _ in range(batch)])
        order = rng.random((batch, n, drawings)).argsort(-1)[..., : k + q]
        classes_of = np.broadcast_to(picked[..., None], order.shape)  # (B, N, K+Q)
        labels = np.broadcast_to(np.arange(n)[None, :, None], order.shape)
        support_perm = rng.permuted(np.tile(np.arange(n * k), (batch, 1)), axis=1)
        query_perm = rng.permuted(np.tile(np.arange(n * q), (batch, 1)), axis=1)

        def flat(part: slice, perm: np.ndarray) -> tuple[Tensor, Tensor]:
            c, d, y = (
                np.take_along_axis(a[:, :, part].reshape(batch, -1), perm, 1)
                for a in (classes_of, order, labels)
            )
            if isinstance(self.images, Tensor):
                device = self.images.device
                x = self.images[
                    torch.as_tensor(c, device=device), torch.as_tensor(d, device=device)
                ]
                return to_float(x).unsqueeze(2), torch.as_tensor(y, device=device)
            return to_float(self.images[c, d]).unsqueeze(2), torch.from_numpy(y)

        support_x, support_y = flat(slice(0, k), support_perm)
        query_x, query_y = flat(slice(k, k + q), query_perm)
        return Episodes(support_x, support_y, query_x, query_y, n, k)


def to_float(images: np.ndarray | Tensor) -> Tensor:
    """uint8 images as float32 in [0, 1], on the device of a tensor given."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    return images.float().div_(255.0)
