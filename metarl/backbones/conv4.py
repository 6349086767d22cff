"""Conv4: the standard image encoder of few-shot learning (Vinyals et al. 2016, "Matching
Networks for One Shot Learning"; Snell et al. 2017, "Prototypical Networks for Few-shot
Learning"), also the embedding module of Relation Networks (Sung et al. 2018).

Each block is a 3x3 convolution, batch norm, ReLU and, in the downsampling blocks, 2x2
max-pooling, or instead a stride of 2 in the convolution (``downsample="stride"``, as Finn
et al. 2017 and Nichol et al. 2018 ran Omniglot: a quarter of the pooled block's products).
Batch norm in training normalises over every image of the batch, so one image's features
depend on the others; ``norm="layer"`` normalises each image on its own instead (over its
channels and pixels, GroupNorm with one group), for learners whose images must not see
each other, such as those reading a sequence online.
With four pooled blocks of 64 channels a 28x28 Omniglot image becomes 64 features and an
84x84 miniImageNet image 64x5x5 = 1600.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from metarl.config import require_positive

NORMS = ("batch", "layer")
DOWNSAMPLING = ("pool", "stride")


class Float32BatchNorm2d(nn.BatchNorm2d):
    """Batch norm computed in float32 under mixed precision (``train.amp``) too: under
    ``vmap`` with fp16 autocast, CUDA's batch norm receives half-precision weights and
    refuses them (MAML's task-batched path); its statistics are also more accurate so. The
    same parameters and state-dict keys as :class:`torch.nn.BatchNorm2d`.

    Inside :func:`statistics_per_group` it normalises each run of ``group`` consecutive
    images by that run's own batch statistics."""

    group: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            dtype = torch.float32 if self.weight is None else self.weight.dtype
            if self.group is None:
                return super().forward(x.to(dtype))
            return _batch_norm_per_group(self, x.to(dtype), self.group)


def _batch_norm_per_group(norm: nn.BatchNorm2d, x: Tensor, group: int) -> Tensor:
    """``norm`` in training mode on images x (G·group, C, H, W), with the batch statistics
    (mean, biased variance) of each run of ``group`` images, and no running statistics.
    ``F.instance_norm`` on the runs viewed as (G, C, group, H, W) gives the same values but
    copies them twice: 1.4x slower on a 5-way 1-shot episode's 75 runs of 64-channel maps."""
    images, channels = x.shape[:2]
    if images % group:
        raise ValueError(f"batch norm per group of {group}: got {images} images, not a multiple")
    runs = x.view(images // group, group, *x.shape[1:])
    var, mean = torch.var_mean(runs, dim=(1, 3, 4), correction=0, keepdim=True)
    scale = (var + norm.eps).rsqrt()
    shape = (1, 1, channels, 1, 1)
    if norm.weight is not None:
        scale = scale * norm.weight.view(shape)
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias.view(shape)
    return torch.addcmul(shift, runs, scale).view(x.shape)


@contextlib.contextmanager
def statistics_per_group(model: nn.Module, group: int) -> Iterator[None]:
    """Within the block, every :class:`Float32BatchNorm2d` of ``model`` normalises each run
    of ``group`` consecutive images of its batch by the run's own statistics: one pass
    computes what a pass per run would, e.g. each query beside the support images in
    Reptile's non-transductive test."""
    require_positive("statistics_per_group", "group", group)
    norms = [m for m in model.modules() if isinstance(m, Float32BatchNorm2d)]
    for norm in norms:
        norm.group = group
    try:
        yield
    finally:
        for norm in norms:
            norm.group = None


class MaxPool2x2(nn.MaxPool2d):
    """2x2 max-pooling. On the CPU without autograd through it (evaluation, and the query
    passes of test-time adaptation) it pools in channels-last memory order, where torch's
    kernel ran 8x faster on Conv4's 64-channel 28x28 maps (the same values), and gives
    the input's order back; with autograd the plain kernel on the input as it is, as under
    ``torch.func`` transforms (``vmap`` cannot change memory formats). A channels-last
    Conv4 (:func:`prefer_channels_last`) stays channels-last throughout."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        plain = (
            x.device.type != "cpu"
            or x.dim() != 4
            or torch._C._are_functorch_transforms_active()  # first: vmap cannot be asked
            or (torch.is_grad_enabled() and x.requires_grad)
            or x.is_contiguous(memory_format=torch.channels_last)
        )
        if plain:
            return super().forward(x)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


def prefer_channels_last(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with its 4-D weights in channels-last memory order on the CPU (unchanged
    elsewhere), in place: every convolution's output, and so the batch norm, ReLU and
    pooling after it, then runs channels-last, where oneDNN and torch's CPU kernels are
    fastest. A training update took 1.37-1.48x less CPU time so (ProtoNet, Matching and
    Relation Networks, fine-tuning, MetaNet, Reptile), SNAIL's 1.24x and first-order MAML's
    1.12x; second-order MAML's 5% more, so its learner keeps the plain order (README,
    *Speed*). The values are the same up to the order of floating-point sums."""
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)
    return model


def conv_block(
    in_channels: int,
    out_channels: int,
    padding: int,
    pool: bool,
    norm: str = "batch",
    stride: int = 1,
) -> nn.Sequential:
    """3x3 convolution of stride ``stride``, normalisation (``norm``: batch or layer), ReLU,
    2x2 max-pool if ``pool``. The convolution has no bias under batch norm, which cancels
    it."""
    if norm not in NORMS:
        raise ValueError(f"conv_block: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    batch = norm == "batch"
    layers = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding, bias=not batch),
        Float32BatchNorm2d(out_channels) if batch else nn.GroupNorm(1, out_channels),
        nn.ReLU(),
    ]
    if pool:
        layers.append(MaxPool2x2())
    return nn.Sequential(*layers)


def conv_block_size(size: int, padding: int, pool: bool, stride: int = 1) -> int:
    """Side of a :func:`conv_block`'s output for an input of side ``size``; ValueError when
    the block cannot take it (the output would be empty)."""
    span = size + 2 * padding - 3  # the last offset a 3x3 window can start at
    out = span // stride + 1 if span >= 0 else 0
    if out >= 1 and pool:
        out //= 2
    if out < 1:
        extras = f"{f', stride {stride}' if stride > 1 else ''}{' and 2x2 pooling' if pool else ''}"
        raise ValueError(
            f"a 3x3 conv block with padding {padding}{extras} "
            f"cannot take {size}x{size} inputs: its output would be empty"
        )
    return out


class Conv4(nn.Module):
    """``blocks`` conv blocks of ``hidden`` channels; only the first ``pooled_blocks`` halve
    the maps (by pooling, or by a stride of 2).

    Args:
        in_channels: image channels (1 for Omniglot, 3 for miniImageNet).
        hidden: channels of every block (64 in the papers).
        blocks: number of conv blocks (4 in the papers).
        pooled_blocks: how many of the first blocks halve the maps; ``None`` for all.
            Relation Networks pool the first 2 of 4 to keep feature maps for their relation
            module.
        padding: zero padding of every 3x3 convolution, in pixels.
        norm: ``batch`` (the papers') or ``layer`` (each image normalised on its own).
        downsample: ``pool`` (2x2 max-pooling after the block) or ``stride`` (the
            convolution strides by 2; 28x28 Omniglot then gives 64x2x2 = 256 features).
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 64,
        blocks: int = 4,
        pooled_blocks: int | None = None,
        padding: int = 1,
        norm: str = "batch",
        downsample: str = "pool",
    ) -> None:
        super().__init__()
        require_positive("Conv4", "in_channels", in_channels)
        require_positive("Conv4", "hidden", hidden)
        require_positive("Conv4", "blocks", blocks)
        pooled_blocks = blocks if pooled_blocks is None else pooled_blocks
        if not _is_int(pooled_blocks) or not 0 <= pooled_blocks <= blocks:
            raise ValueError(
                f"Conv4: pooled_blocks must be an integer in 0..blocks={blocks} or None, "
                f"got {pooled_blocks!r}"
            )
        if not _is_int(padding) or padding < 0:
            raise ValueError(f"Conv4: padding must be a non-negative integer, got {padding!r}")
        if downsample not in DOWNSAMPLING:
            raise ValueError(
                f"Conv4: downsample must be one of {', '.join(DOWNSAMPLING)}, got {downsample!r}"
            )
        self.in_channels = int(in_channels)
        self.hidden = int(hidden)
        self.padding = int(padding)
        halved = [i < pooled_blocks for i in range(blocks)]
        self.pooled = [half and downsample == "pool" for half in halved]
        self.strides = [2 if half and downsample == "stride" else 1 for half in halved]
        self.blocks = nn.Sequential(
            *(
                conv_block(
                    self.in_channels if i == 0 else self.hidden,
                    self.hidden,
                    padding,
                    pool,
                    norm,
                    stride,
                )
                for i, (pool, stride) in enumerate(zip(self.pooled, self.strides, strict=True))
            )
        )

    def feature_map(self, x: Tensor) -> Tensor:
        """Feature maps (..., hidden, h, w) of images (..., in_channels, H, W)."""
        if x.dim() < 3 or x.shape[-3] != self.in_channels:
            raise ValueError(
                f"Conv4 expects images (..., {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        maps = self.blocks(x.reshape(-1, *x.shape[-3:]))
        return maps.reshape(*x.shape[:-3], *maps.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        """Flattened features (..., out_features) of images (..., in_channels, H, W)."""
        return self.feature_map(x).flatten(-3)

    def out_shape(self, image_size: int) -> tuple[int, int, int]:
        """Shape (hidden, h, w) of :meth:`feature_map` for square images of side
        ``image_size``; ValueError when the images are too small for the blocks."""
        require_positive("Conv4.out_shape", "image_size", image_size)
        size = int(image_size)
        for i, (pool, stride) in enumerate(zip(self.pooled, self.strides, strict=True)):
            try:
                size = conv_block_size(size, self.padding, pool, stride)
            except ValueError as error:
                raise ValueError(
                    f"Conv4: {image_size}x{image_size} images are too small for block {i + 1} of "
                    f"{len(self.pooled)}: {error}"
                ) from None
        return self.hidden, size, size

    def out_features(self, image_size: int) -> int:
        """Width of :meth:`forward`'s features for square images of side ``image_size``."""
        channels, h, w = self.out_shape(image_size)
        return channels * h * w


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
