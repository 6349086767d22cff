"""Classify new images with a trained few-shot run, in one call.

>>> labels = metarl.fewshot.classify("runs/protonet-omniglot", support, ["a", "b"], query)

Images are file paths (dark ink on light paper, as Omniglot's PNGs) or arrays with bright
ink on a dark background (as :func:`metarl.fewshot.load_omniglot` returns them): uint8
0..255 or float 0..1, each (H, W) or (1, H, W), square, resized to the run's image size.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metarl import runs
from metarl.errors import UsageError
from metarl.experiment import for_evaluation, resolve_config
from metarl.learners.episodic import EpisodicClassifier
from metarl.registry import get_recipe

ImageInput = str | Path | np.ndarray


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("1", "L"):
                raise UsageError(
                    f"{path}: expected a grayscale image (mode 1 or L), got mode {image.mode}"
                )
            pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as err:
        raise UsageError(f"{path}: not a readable image ({err})") from None
    return 1.0 - pixels  # bright ink, as the network was trained


def _to_array(image: ImageInput, index: int) -> np.ndarray:
    if isinstance(image, str | Path):
        return _read_file(Path(image))
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise UsageError(
            f"image {index}: expected a grayscale image (H, W) or (1, H, W), "
            f"got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"image {index}: expected uint8 or float pixels, got {array.dtype}")
    if array.min() < 0 or array.max() > 1:
        raise UsageError(f"image {index}: float pixels must lie in [0, 1]")
    return array.astype(np.float32)


def prepare_images(images: Sequence[ImageInput] | np.ndarray, size: int) -> Tensor:
    """Images as a float tensor (n, 1, size, size), checked and resized."""
    if len(images) == 0:
        raise UsageError("no images given")
    out = []
    for i, image in enumerate(images):
        array = _to_array(image, i)
        if array.shape[0] != array.shape[1]:
            raise UsageError(f"image {i}: expected a square image, got {array.shape}")
        tensor = torch.from_numpy(array)[None, None]
        if array.shape[0] != size:
            tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True)
        out.append(tensor[0])
    return torch.stack(out)


class FewShotClassifier:
    """A trained few-shot classifier, loaded from a run folder.

    Args:
        model: the episodic classifier.
        image_size: the side of its input images.
    """

    def __init__(self, model: EpisodicClassifier, image_size: int) -> None:
        self.model = model.eval()
        self.image_size = image_size

    @classmethod
    def load(cls, run_dir: str | Path) -> FewShotClassifier:
        """The classifier of the last checkpoint of a few-shot run, on the CPU whichever
        device it was trained on."""
        path = Path(run_dir)
        config = resolve_config(for_evaluation(runs.read_run_config(path), device="cpu"))
        load = getattr(get_recipe(config.agent), "load_classifier", None)
        if load is None:
            raise UsageError(f"{path} is a '{config.agent}' run, not a few-shot classifier")
        model = load(config, runs.load_checkpoint(path)["agent"])
        return cls(model, config.data.image_size)

    @torch.no_grad()
    def predict(
        self,
        support: Sequence[ImageInput] | np.ndarray,
        support_labels: Sequence[Hashable],
        query: Sequence[ImageInput] | np.ndarray,
    ) -> list[Any]:
        """The label (one of ``support_labels``) of each query image."""
        if len(support) != len(support_labels):
            raise UsageError(
                f"{len(support)} support images but {len(support_labels)} support labels"
            )
        classes = list(dict.fromkeys(support_labels))
        if len(classes) < 2:
            raise UsageError("the support set must hold at least two classes")
        index = {label: i for i, label in enumerate(classes)}
        support_y = torch.tensor([[index[label] for label in support_labels]])
        support_x = prepare_images(support, self.image_size)[None]
        query_x = prepare_images(query, self.image_size)[None]
        try:
            logits = self.model(support_x, support_y, query_x, len(classes))
        except ValueError as err:  # e.g. more classes than a SNAIL classifier reads
            raise UsageError(str(err)) from None
        return [classes[i] for i in logits[0].argmax(-1).tolist()]


def classify(
    run_dir: str | Path,
    support: Sequence[ImageInput] | np.ndarray,
    support_labels: Sequence[Hashable],
    query: Sequence[ImageInput] | np.ndarray,
) -> list[Any]:
    """Label ``query`` images with a trained run, given a labelled support set (one call;
    use :class:`FewShotClassifier` to load once and predict many times)."""
    return FewShotClassifier.load(run_dir).predict(support, support_labels, query)
