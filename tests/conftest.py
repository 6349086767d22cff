import os
from pathlib import Path

import pytest

NO_OMNIGLOT = "Omniglot test data not found"


def omniglot_candidates() -> list[Path]:
    """Where the tests look for Omniglot, in order: ``$METARL_TEST_DATA``, ``$METARL_DATA``
    (the folder README tells users to set), ``shared/datasets/omniglot`` beside the checkout."""
    given = [os.environ.get(name) for name in ("METARL_TEST_DATA", "METARL_DATA")]
    shared = Path(__file__).resolve().parents[2] / "shared/datasets/omniglot"
    return [*(Path(p).resolve() for p in given if p), shared]


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    """The read-only Omniglot copy (the first of :func:`omniglot_candidates` holding the two
    sets); tests needing it are skipped where there is none."""
    for path in omniglot_candidates():
        if (path / "images_background.npz").is_file():
            return path
    pytest.skip(f"{NO_OMNIGLOT} in {', '.join(map(str, omniglot_candidates()))}")


def pytest_terminal_summary(terminalreporter) -> None:
    """One line saying why the Omniglot tests were skipped, without ``-rs``."""
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if NO_OMNIGLOT in str(r.longrepr)
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} Omniglot tests skipped: no images_background.npz in "
            f"{', '.join(map(str, omniglot_candidates()))} "
            "(set METARL_TEST_DATA or METARL_DATA to the Omniglot folder)"
        )


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
