import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.errors import UsageError
from metarl.fewshot import (
    data_dir,
    load_omniglot,
    load_sets,
    make_splits,
    omniglot,
    read_png_images,
)

SMALL_ZIP = "images_background_small1.zip"


def link_npz(omniglot_dir: Path, folder: Path) -> Path:
    """A writable data folder holding links to the shared (read-only) npz bundles."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("background", "evaluation"):
        (folder / f"images_{name}.npz").symlink_to(omniglot_dir / f"images_{name}.npz")
    return folder


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(UsageError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def png_bytes(size=(105, 105), mode="1") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def character_zip(path: Path, drawings=20, **png) -> Path:
    """An official-layout zip with one character, ``drawings`` PNGs made by :func:`png_bytes`."""
    data = png_bytes(**png)
    members = {
        f"images_background/Latin/character01/0001_{d:02d}.png": data
        for d in range(1, drawings + 1)
    }
    return write_zip(path, members)


class FakeResponse(io.BytesIO):
    headers = {}


@pytest.fixture(scope="module")
def full(omniglot_dir, tmp_path_factory):
    """A data folder whose 28 px cache was built once, and the sets it holds."""
    folder = link_npz(omniglot_dir, tmp_path_factory.mktemp("omniglot"))
    return folder, load_sets(folder, progress=False)


@pytest.fixture(scope="module")
def sources(omniglot_dir):
    """The shared npz bundles' bool images (True = paper), read once."""
    return {
        name: np.load(omniglot_dir / f"images_{name}.npz")["images"]
        for name in ("background", "evaluation")
    }


def test_data_dir_prefers_the_option_then_the_variable_then_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("METARL_DATA", raising=False)
    assert data_dir() == tmp_path / "cache" / "omniglot"
    monkeypatch.setenv("METARL_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "given") == tmp_path / "given"


def test_png_zip_and_folder_match_the_npz_bit_for_bit(omniglot_dir, sources, tmp_path):
    images, ids = read_png_images(omniglot_dir / SMALL_ZIP)
    assert images.shape == (136, 20, 105, 105) and images.dtype == bool
    assert np.all(np.diff(ids) > 0) and ids[0] >= 1 and ids[-1] <= 964
    assert np.array_equal(images, sources["background"][ids - 1])
    with zipfile.ZipFile(omniglot_dir / SMALL_ZIP) as archive:
        archive.extractall(tmp_path)
    folder_images, folder_ids = read_png_images(tmp_path / "images_background_small1")
    assert np.array_equal(folder_ids, ids) and np.array_equal(folder_images, images)


def test_sets_are_uint8_with_bright_ink_resized_with_antialiasing(full, sources):
    _, sets = full
    assert sets["background"].shape == (964, 20, 28, 28)
    assert sets["evaluation"].shape == (659, 20, 28, 28)
    for name, images in sets.items():
        assert images.dtype == np.uint8
        ink = ~sources[name][:50]
        small = images[:50].astype(np.float64) / 255
        # ink is bright, paper dark, and the ink's area survives the resize
        assert small.max() == 1.0 and np.median(images[:50]) == 0
        assert abs(small.mean() - ink.mean()) < 0.01
        assert len(np.unique(images[:50])) > 50  # antialiased: grey edges, not just 0 and 255


def test_the_second_load_reads_only_the_cache(full, monkeypatch):
    folder, sets = full
    assert (folder / "omniglot28.npz").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("a source was read")

    monkeypatch.setattr(omniglot, "_read_npz", fail)
    monkeypatch.setattr(omniglot, "read_png_images", fail)
    again = load_sets(folder, progress=False)
    for name in sets:
        assert np.array_equal(again[name], sets[name])
    splits = load_omniglot(folder, protocol="lake", val_characters=10, progress=False)
    assert np.array_equal(splits.test, sets["evaluation"])


def test_a_corrupt_cache_is_rebuilt_with_a_warning(full, omniglot_dir, tmp_path):
    _, sets = full
    folder = link_npz(omniglot_dir, tmp_path / "data")
    (folder / "omniglot28.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="unreadable cache"):
        rebuilt = load_sets(folder, progress=False)
    assert np.array_equal(rebuilt["evaluation"], sets["evaluation"])
    assert np.array_equal(np.load(folder / "omniglot28.npz")["background"], sets["background"])


def test_vinyals_split_has_four_rotations_per_character(full):
    _, sets = full
    splits = make_splits(sets, "vinyals", val_characters=100)
    assert splits.protocol == "vinyals"
    assert splits.train.shape == (4400, 20, 28, 28) and splits.train.dtype == np.uint8
    assert splits.val.shape == (400, 20, 28, 28)
    assert splits.test.shape == (1692, 20, 28, 28)
    ids = splits.character_ids
    assert np.array_equal(ids["train"][:8], [1, 1, 1, 1, 2, 2, 2, 2])
    assert np.array_equal(np.unique(ids["test"]), np.arange(1201, 1624))
    # character 1301 (evaluation row 336) is test class 4 * 100 + r
    for r in range(4):
        assert np.array_equal(splits.test[400 + r], np.rot90(sets["evaluation"][336], r, (1, 2)))
    first = splits.train[:4]
    assert all(not np.array_equal(first[a], first[b]) for a in range(4) for b in range(a))
    assert np.array_equal(first[1], np.rot90(first[0], 1, axes=(1, 2)))
    assert np.array_equal(first[3], np.rot90(first[2], 1, axes=(1, 2)))


def test_lake_split_keeps_the_alphabets_apart(full):
    _, sets = full
    splits = make_splits(sets, "lake", val_characters=64)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [900, 64, 659]
    assert np.array_equal(splits.val, sets["background"][900:])
    assert np.array_equal(splits.test, sets["evaluation"])


@pytest.mark.parametrize("protocol", ["vinyals", "lake"])
def test_splits_share_no_character(full, protocol):
    ids = make_splits(full[1], protocol).character_ids
    train, val, test = (set(ids[split].tolist()) for split in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(1, 1624))


@pytest.mark.parametrize(
    ("protocol", "val", "message"),
    [
        ("ravi", 100, "unknown Omniglot protocol 'ravi'"),
        ("vinyals", 1200, "0..1199"),
        ("lake", 964, "0..963"),
        ("lake", -1, "0..963"),
    ],
)
def test_bad_protocol_settings_are_refused(full, protocol, val, message):
    assert message in one_line_error(make_splits, full[1], protocol, val)


def test_a_truncated_npz_is_reported_and_kept(omniglot_dir, tmp_path):
    path = tmp_path / "images_background.npz"
    path.write_bytes((omniglot_dir / "images_background.npz").read_bytes()[:5000])
    message = one_line_error(load_sets, tmp_path, download=False)
    assert str(path) in message and "not a readable .npz" in message
    assert path.stat().st_size == 5000 and not (tmp_path / "omniglot28.npz").exists()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"images": np.zeros((10, 20, 105, 105), bool)},
            "bool (10, 20, 105, 105), expected bool (or 0/1 uint8) (964, 20, 105, 105)",
        ),
        ({"images": np.full((964, 20, 105, 105), 7, np.uint8)}, "uint8"),
        ({"pixels": np.zeros(3)}, "no 'images' array (found pixels)"),
    ],
)
def test_an_npz_of_the_wrong_content_is_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "images_background.npz", **arrays)
    assert message in one_line_error(load_sets, tmp_path, download=False)


def test_a_zip_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "images_background.zip"
    path.write_bytes(b"<html>not found</html>")
    message = one_line_error(load_sets, tmp_path, download=False)
    assert f"{path}: not a readable zip file" in message
    assert path.read_bytes() == b"<html>not found</html>"


@pytest.mark.parametrize(
    ("png", "message"),
    [
        ({"drawings": 19}, "character 0001 (Latin/character01) has 19 drawings, expected 20"),
        ({"size": (64, 64)}, "got 64x64 mode 1"),
        ({"mode": "RGB"}, "got 105x105 mode RGB"),
    ],
)
def test_zips_with_bad_characters_or_images_are_refused(tmp_path, png, message):
    character_zip(tmp_path / "images_background.zip", **png)
    text = one_line_error(load_sets, tmp_path, download=False)
    assert message in text and "images_background.zip" in text


def test_a_zip_of_the_wrong_layout_is_refused(tmp_path):
    write_zip(tmp_path / "images_background.zip", {"images/0001_01.png": png_bytes()})
    assert "no <Alphabet>/characterNN/<ID>_<DD>.png" in one_line_error(load_sets, tmp_path)


def test_a_partial_set_is_refused(tmp_path):
    character_zip(tmp_path / "images_background.zip")
    message = one_line_error(load_sets, tmp_path, download=False)
    assert "expected the 964 characters 0001..0964" in message and "found 1 (0001..0001)" in message


def test_missing_data_without_download_names_the_folder(tmp_path):
    message = one_line_error(load_sets, tmp_path / "empty", download=False)
    assert str(tmp_path / "empty") in message and "images_background.zip" in message


def test_a_failed_download_names_the_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = one_line_error(load_sets, tmp_path / "data", progress=False)
    assert message.startswith("could not download https://github.com/brendenlake/omniglot")
    assert f"images_evaluation.npz) in {tmp_path / 'data'} and run again" in message
    assert not (tmp_path / "data").exists()  # a --data-dir is made only for a download


def test_a_download_failing_midway_removes_the_folders_it_made(tmp_path, monkeypatch):
    class Broken(FakeResponse):
        def read(self, size: int = -1) -> bytes:
            raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken(b"x" * 10))
    message = one_line_error(load_sets, tmp_path / "new" / "data", progress=False)
    assert "could not download" in message and "reset by peer" in message
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_download_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: FakeResponse(b"x" * 1000))
    message = one_line_error(load_sets, tmp_path, progress=False)
    assert "is corrupt (MD5" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []


def test_a_download_is_checked_and_renamed(tmp_path, monkeypatch):
    payload = Path(__file__).read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: FakeResponse(payload))
    digest = hashlib.md5(payload).hexdigest()
    target = tmp_path / "images_background.zip"
    omniglot._download("https://example.org/x.zip", target, digest, False, "hint")
    assert target.read_bytes() == payload and list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("folder", ["missing", "read-only"])
def test_an_unwritable_cache_only_warns(tmp_path, folder):
    sets = {"background": np.zeros(3, np.uint8), "evaluation": np.zeros(3, np.uint8)}
    target = tmp_path / folder
    if folder == "read-only":
        target.mkdir(mode=0o555)
    with pytest.warns(UserWarning, match="could not write the Omniglot cache"):
        omniglot._write_cache(target / "omniglot28.npz", sets)
    assert not (target / "omniglot28.npz").exists()


def test_a_read_only_data_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    (data / "images_background.npz").write_bytes(b"unused: the cache is found first")
    data.chmod(0o555)
    monkeypatch.setenv("METARL_CACHE_DIR", str(cache))
    sets = {
        name: np.zeros((omniglot.SET_CHARACTERS[name], omniglot.DRAWERS, 8, 8), np.uint8)
        for name in omniglot.SET_CHARACTERS
    }
    path = omniglot._cache_path(data, 8)
    assert path.parent == cache / "omniglot"
    omniglot._write_cache(path, sets)
    loaded = omniglot.load_sets(data, image_size=8, download=False)
    assert all(np.array_equal(loaded[k], sets[k]) for k in sets)
