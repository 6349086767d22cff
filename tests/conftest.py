import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    """The read-only Omniglot copy: ``$METARL_TEST_DATA``, else ``shared/datasets/omniglot``
    beside the checkout; tests needing it are skipped where it is absent."""
    env = os.environ.get("METARL_TEST_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared/datasets/omniglot"
    if not path.is_dir():
        pytest.skip(f"Omniglot test data not found in {path} (set METARL_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def omniglot_data(omniglot_dir, tmp_path_factory) -> Path:
    """A writable data folder linking the shared npz files, its 28-pixel cache built once
    per test session."""
    from metarl.fewshot import load_sets

    folder = tmp_path_factory.mktemp("omniglot")
    for name in ("images_background.npz", "images_evaluation.npz"):
        (folder / name).symlink_to(omniglot_dir / name)
    load_sets(folder, progress=False)
    return folder
