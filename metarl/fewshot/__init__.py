"""Few-shot image classification: Omniglot data, N-way K-shot episodes and their evaluation."""

from metarl.fewshot.episodes import Episodes, EpisodeSampler
from metarl.fewshot.inference import FewShotClassifier, classify
from metarl.fewshot.omniglot import (
    DATA_ENV,
    Splits,
    data_dir,
    load_omniglot,
    load_sets,
    make_splits,
    read_png_images,
)

__all__ = [
    "DATA_ENV",
    "EpisodeSampler",
    "Episodes",
    "FewShotClassifier",
    "Splits",
    "classify",
    "data_dir",
    "load_omniglot",
    "load_sets",
    "make_splits",
    "read_png_images",
]
