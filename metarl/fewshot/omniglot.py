"""Omniglot (Lake et al. 2015) for N-way K-shot benchmarks: finding, checking and splitting it.

The data folder (:func:`data_dir`) is searched, for each of the two official sets, for the
preprocessed cache ``omniglot{S}.npz``, then the npz bundle ``images_{set}.npz``, then the
official zip ``images_{set}.zip`` or the folder it unzips to; missing sets are downloaded
from the official repository and checked against their MD5. Images are resized once to
``S x S`` pixels and cached, so later start-ups only read one uncompressed file.

Images are uint8 with ink 255 and paper 0 (bright ink on a dark background, as networks
usually take Omniglot), shaped (characters, 20 drawers, S, S), characters in the order of
their official 4-digit IDs and drawers in the order of their 2-digit numbers. Whatever the
source, the same files give the same arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import re
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from platformdirs import user_cache_dir
from tqdm import tqdm

from metarl.config import is_positive_int
from metarl.errors import UsageError
from metarl.files import write_atomic

DATA_ENV = "METARL_DATA"
"""Environment variable naming the data folder when no folder is given."""

SETS = ("background", "evaluation")
SET_CHARACTERS = {"background": 964, "evaluation": 659}
"""Characters per set; background IDs are 1..964, evaluation IDs 965..1623."""

DRAWERS = 20
SOURCE_SIZE = 105
PROTOCOLS = ("vinyals", "lake")
VINYALS_TRAIN_CHARACTERS = 1200

URL = "https://github.com/brendenlake/omniglot/raw/master/python/images_{set}.zip"
MD5 = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}

_CACHE_VERSION = 1
_RESIZE_CHUNK = 1024
"""Images resized per call: bounds the float32 buffer to about 45 MB."""

_PNG_PATH = re.compile(r"(?:^|/)([^/]+/character\d+)/(\d+)_(\d+)\.png$")
"""``<Alphabet>/characterNN/<ID>_<DD>.png``, the official layout, anywhere in a zip."""

_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
"""What corrupt or truncated zip and npz files raise."""


@dataclass(frozen=True)
class Splits:
    """Training, validation and test classes of one protocol.

    Attributes:
        train, val, test: uint8 images (classes, 20, S, S), ink 255.
        protocol: ``vinyals`` or ``lake`` (see :func:`make_splits`).
        character_ids: per split, the official character ID (1..1623) of each class; under
            ``vinyals`` class ``4 * c + r`` is character ``c`` rotated by ``r * 90`` degrees.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str
    character_ids: dict[str, np.ndarray]


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data folder: ``explicit`` (``--data-dir``), else ``$METARL_DATA``, else
    ``omniglot`` in the user cache folder (``$METARL_CACHE_DIR`` or platformdirs')."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("METARL_CACHE_DIR") or user_cache_dir("metarl")
    return Path(cache).expanduser() / "omniglot"


def load_omniglot(
    directory: str | Path | None = None,
    *,
    protocol: str = "vinyals",
    val_characters: int = 100,
    image_size: int = 28,
    download: bool = True,
    progress: bool = True,
) -> Splits:
    """Omniglot split by ``protocol``, in one call: :func:`load_sets` then :func:`make_splits`."""
    sets = load_sets(directory, image_size=image_size, download=download, progress=progress)
    return make_splits(sets, protocol, val_characters)


def load_sets(
    directory: str | Path | None = None,
    *,
    image_size: int = 28,
    download: bool = True,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """The background (964 characters) and evaluation (659) sets as uint8 (C, 20, S, S).

    Args:
        directory: data folder; ``None`` for :func:`data_dir`'s default.
        image_size: side S in pixels; images are resized from 105 px with an antialiased
            bilinear filter (the one :mod:`metarl.fewshot.inference` applies to new images).
        download: fetch sets found nowhere in the folder from the official repository.
        progress: show progress bars while downloading and reading PNGs.

    Raises:
        UsageError: data missing and not downloadable, or a source file is unreadable or not
            laid out as expected; the message names the file.
    """
    if not is_positive_int(image_size):
        raise UsageError(f"image_size must be a positive integer, got {image_size!r}")
    root = data_dir(directory)
    cache = _cache_path(root, image_size)
    if cache.is_file():
        sets = _read_cache(cache, image_size)
        if sets is not None:
            return sets
    sets = {}
    for name in SETS:
        sets[name] = _to_ink(_read_set(root, name, download, progress), image_size)
    _write_cache(cache, sets)
    return sets


def _cache_path(root: Path, image_size: int) -> Path:
    """Where the preprocessed sets live: in the data folder, or, when that folder is marked
    read-only (a shared copy), in the user cache under a name derived from its path."""
    name = f"omniglot{image_size}.npz"
    if not root.is_dir() or root.stat().st_mode & 0o222:
        return root / name
    folder = Path(os.environ.get("METARL_CACHE_DIR") or user_cache_dir("metarl")).expanduser()
    with contextlib.suppress(OSError):
        (folder / "omniglot").mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return folder / "omniglot" / f"{digest}-{name}"


def make_splits(
    sets: dict[str, np.ndarray], protocol: str = "vinyals", val_characters: int = 100
) -> Splits:
    """Training, validation and test classes from :func:`load_sets`' two sets.

    ``vinyals`` (Vinyals et al. 2016, followed by MAML, ProtoNet, SNAIL): characters 1..1200
    of both sets in ID order train, the rest (423) test; each character's rotations by 0, 90,
    180 and 270 degrees are four classes. ``lake`` (Lake et al. 2015): the background
    alphabets train and the evaluation alphabets test, without rotations. Either way the
    last ``val_characters`` training characters are held out for validation.
    """
    for name in SETS:
        shape = getattr(sets.get(name), "shape", None)
        if shape is None or len(shape) != 4 or shape[:2] != (SET_CHARACTERS[name], DRAWERS):
            raise ValueError(
                f"sets[{name!r}] must be an array ({SET_CHARACTERS[name]}, {DRAWERS}, S, S), "
                f"got {shape}"
            )
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown Omniglot protocol {protocol!r}; expected vinyals or lake")
    train_end = VINYALS_TRAIN_CHARACTERS if protocol == "vinyals" else SET_CHARACTERS["background"]
    if not isinstance(val_characters, int | np.integer) or not 0 <= val_characters < train_end:
        raise UsageError(
            f"val_characters must be an integer in 0..{train_end - 1} (the {protocol} protocol "
            f"has {train_end} training characters), got {val_characters!r}"
        )
    images = np.concatenate([sets[name] for name in SETS])
    ids = np.arange(1, len(images) + 1)
    val_start = train_end - val_characters
    bounds = {"train": (0, val_start), "val": (val_start, train_end), "test": (train_end, None)}
    arrays, character_ids = {}, {}
    for split, (start, end) in bounds.items():
        if protocol == "vinyals":
            arrays[split] = _rotations(images[start:end])
            character_ids[split] = np.repeat(ids[start:end], 4)
        else:
            arrays[split] = images[start:end]
            character_ids[split] = ids[start:end]
    return Splits(protocol=protocol, character_ids=character_ids, **arrays)


def read_png_images(source: str | Path, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The drawings of an official-layout zip or folder (``<Alphabet>/characterNN/<ID>_<DD>.png``).

    Returns the images as bool (characters, 20, 105, 105) with True = paper, as the official
    1-bit PNGs store them, and the int64 character IDs of the rows, in increasing order;
    drawers are ordered by ``DD``.

    Raises:
        UsageError: unreadable zip or PNG, no file in the official layout, a character
            without exactly 20 drawings, or a PNG not 105x105 black and white.
    """
    source = Path(source)
    with _png_files(source) as (names, read):
        found: dict[int, dict[int, str]] = {}
        folders: dict[int, str] = {}
        for name in names:
            match = _PNG_PATH.search(name)
            if match is None:
                continue
            folder, char_id, drawer = match[1], int(match[2]), int(match[3])
            if folders.setdefault(char_id, folder) != folder:
                raise UsageError(
                    f"{source}: character {char_id:04d} appears in both "
                    f"{folders[char_id]} and {folder}"
                )
            found.setdefault(char_id, {})[drawer] = name
        if not found:
            raise UsageError(
                f"{source}: no <Alphabet>/characterNN/<ID>_<DD>.png images found; expected the "
                "layout of the official images_background.zip"
            )
        for char_id, drawings in found.items():
            if sorted(drawings) != list(range(1, DRAWERS + 1)):
                raise UsageError(
                    f"{source}: character {char_id:04d} ({folders[char_id]}) has "
                    f"{len(drawings)} drawings, expected {DRAWERS} numbered 01..{DRAWERS}"
                )
        ids = np.array(sorted(found), dtype=np.int64)
        images = np.empty((len(ids), DRAWERS, SOURCE_SIZE, SOURCE_SIZE), dtype=bool)
        total = len(ids) * DRAWERS
        with tqdm(total=total, desc=f"reading {source.name}", disable=not progress) as bar:
            for row, char_id in enumerate(ids):
                for drawer, name in found[int(char_id)].items():
                    images[row, drawer - 1] = _decode_png(read, name, source)
                bar.update(DRAWERS)
    return images, ids


@contextlib.contextmanager
def _png_files(source: Path) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
    """Posix paths of the PNGs in a zip or folder and a function reading one."""
    if source.is_dir():
        yield (
            [p.relative_to(source).as_posix() for p in source.rglob("*.png")],
            (lambda name: (source / name).read_bytes()),
        )
        return
    try:
        archive = zipfile.ZipFile(source)
    except _READ_ERRORS as err:
        raise UsageError(f"{source}: not a readable zip file ({_describe(err)})") from None
    with archive:
        yield [n for n in archive.namelist() if n.endswith(".png")], archive.read


def _decode_png(read: Callable[[str], bytes], name: str, source: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(read(name))) as image:
            if image.size != (SOURCE_SIZE, SOURCE_SIZE) or image.mode not in ("1", "L"):
                width, height = image.size
                raise UsageError(
                    f"{name} in {source}: expected a {SOURCE_SIZE}x{SOURCE_SIZE} black-and-white "
                    f"PNG (mode 1 or L), got {width}x{height} mode {image.mode}"
                )
            pixels = np.asarray(image)
    except (*_READ_ERRORS, SyntaxError) as err:  # PIL raises SyntaxError on broken chunks
        raise UsageError(f"{name} in {source}: not a readable PNG ({_describe(err)})") from None
    return pixels if pixels.dtype == bool else pixels > 127


def _read_set(root: Path, name: str, download: bool, progress: bool) -> np.ndarray:
    """One set's bool (C, 20, 105, 105) images, True = paper, from the first source found."""
    bundle, archive, folder = (root / f"images_{name}{ext}" for ext in (".npz", ".zip", ""))
    if bundle.is_file():
        return _read_npz(bundle, name)
    if not archive.is_file() and not folder.is_dir():
        hint = (
            "put images_background.zip and images_evaluation.zip (or images_background.npz and "
            f"images_evaluation.npz) in {root} and run again"
        )
        if not download:
            raise UsageError(f"no Omniglot {name} set in {root} and downloading is off; {hint}")
        _download(URL.format(set=name), archive, MD5[name], progress, hint)
    source = archive if archive.is_file() else folder
    images, ids = read_png_images(source, progress=progress)
    first = 1 if name == "background" else SET_CHARACTERS["background"] + 1
    expected = np.arange(first, first + SET_CHARACTERS[name])
    if not np.array_equal(ids, expected):
        raise UsageError(
            f"{source}: expected the {len(expected)} characters {first:04d}..{expected[-1]:04d} "
            f"of Omniglot's {name} set, found {len(ids)} ({ids[0]:04d}..{ids[-1]:04d})"
        )
    return images


def _read_npz(path: Path, name: str) -> np.ndarray:
    expected = (SET_CHARACTERS[name], DRAWERS, SOURCE_SIZE, SOURCE_SIZE)
    try:
        bundle = np.load(path)
        if not isinstance(bundle, np.lib.npyio.NpzFile):
            raise UsageError(f"{path}: a single .npy array, not an .npz bundle")
        with bundle:
            if "images" not in bundle.files:
                raise UsageError(f"{path}: no 'images' array (found {', '.join(bundle.files)})")
            images = bundle["images"]
    except _READ_ERRORS as err:
        raise UsageError(f"{path}: not a readable .npz file ({_describe(err)})") from None
    binary = images.dtype == bool or (images.dtype == np.uint8 and images.max(initial=0) <= 1)
    if images.shape != expected or not binary:
        raise UsageError(
            f"{path}: 'images' is {images.dtype} {images.shape}, expected bool (or 0/1 uint8) "
            f"{expected} with True = paper"
        )
    return images.astype(bool, copy=False)


def _download(url: str, dest: Path, md5: str, progress: bool, hint: str) -> None:
    """Streams ``url`` into ``dest``, written whole (:func:`metarl.files.write_atomic`) and
    only once its MD5 is checked: a failed or corrupt download leaves no file behind, and the
    data folder is made only once the server answers (a failed download leaves none)."""
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (OSError, http.client.HTTPException) as err:
        raise UsageError(f"could not download {url} ({_describe(err)}); {hint}") from None

    def fetch(out: BinaryIO) -> None:
        digest = hashlib.md5()
        total = int(response.headers.get("Content-Length") or 0) or None
        try:
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:
            raise UsageError(f"could not download {url} ({_describe(err)}); {hint}") from None
        if digest.hexdigest() != md5:
            raise UsageError(
                f"the download of {url} is corrupt (MD5 {digest.hexdigest()}, expected {md5}) "
                f"and was removed; {hint}"
            )

    made = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]
    with response:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, fetch)
        except BaseException as err:
            for folder in made:  # deepest first; only the empty folders this call made
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(err, OSError):
                raise UsageError(
                    f"cannot write to {dest.parent} ({_describe(err)}); {hint}"
                ) from None
            raise


def _to_ink(paper: np.ndarray, size: int) -> np.ndarray:
    """uint8 images with ink 255, resized from 105 px with antialiasing and rounded."""
    ink = ~paper
    if size == SOURCE_SIZE:
        return ink.astype(np.uint8) * np.uint8(255)
    flat = ink.reshape(-1, 1, SOURCE_SIZE, SOURCE_SIZE)
    out = np.empty((len(flat), size, size), dtype=np.uint8)
    for start in range(0, len(flat), _RESIZE_CHUNK):
        chunk = torch.from_numpy(flat[start : start + _RESIZE_CHUNK]).float()
        small = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True)
        out[start : start + len(chunk)] = (small[:, 0] * 255).round_().clamp_(0, 255).byte()
    return out.reshape(*paper.shape[:2], size, size)


def _rotations(images: np.ndarray) -> np.ndarray:
    """Each character as four classes, rotated by 0, 90, 180, 270 degrees: class 4c + r."""
    rotated = np.stack([np.rot90(images, k, axes=(-2, -1)) for k in range(4)], axis=1)
    return rotated.reshape(-1, *images.shape[1:])


def _read_cache(path: Path, size: int) -> dict[str, np.ndarray] | None:
    """The cached sets, or None (with a warning) when the file is unreadable or stale."""
    try:
        with np.load(path) as cache:
            version = int(cache["version"])
            sets = {name: cache[name] for name in SETS}
    except (*_READ_ERRORS, KeyError, TypeError, AttributeError) as err:
        warnings.warn(f"{path}: unreadable cache ({_describe(err)}); rebuilding it", stacklevel=3)
        return None
    valid = version == _CACHE_VERSION and all(
        sets[name].dtype == np.uint8
        and sets[name].shape == (SET_CHARACTERS[name], DRAWERS, size, size)
        for name in SETS
    )
    if not valid:
        warnings.warn(f"{path}: cache of another format; rebuilding it", stacklevel=3)
        return None
    return sets


def _write_cache(path: Path, sets: dict[str, np.ndarray]) -> None:
    """Writes the cache whole (:func:`metarl.files.write_atomic`); a read-only folder only
    costs preprocessing next time."""
    try:
        if not path.parent.stat().st_mode & 0o222:  # marked read-only: respected even by root
            raise PermissionError("the folder is read-only")
        write_atomic(path, lambda out: np.savez(out, version=np.int64(_CACHE_VERSION), **sets))
    except OSError as err:
        warnings.warn(
            f"could not write the Omniglot cache {path} ({_describe(err)}); "
            "images will be preprocessed again next time",
            stacklevel=3,
        )


def _describe(err: BaseException) -> str:
    """An exception as one line: its type and message."""
    return " ".join(f"{type(err).__name__}: {err}".split())
