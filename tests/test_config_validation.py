"""Configuration checks: the one positive-integer check (constructor arguments and config
keys), and every shipped experiment resolving with the shared evaluation settings."""

import dataclasses
import re

import numpy as np
import pytest

from metarl.config import (
    EvalConfig,
    config_names,
    is_positive_int,
    read_raw,
    require_positive,
    require_positive_ints,
    set_key,
)
from metarl.errors import ConfigError
from metarl.experiment import resolve_config


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1)])
def test_counts_of_python_and_numpy_integers_pass(value):
    assert is_positive_int(value)
    assert require_positive("Owner", "size", value) == int(value)
    assert type(require_positive("Owner", "size", value)) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, 2.5, True, "3", None, np.float64(2.0)])
def test_non_counts_are_refused_naming_owner_argument_and_value(value):
    assert not is_positive_int(value)
    message = f"Owner: size must be a positive integer, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        require_positive("Owner", "size", value)


@dataclasses.dataclass
class _Section:
    ways: int = 5
    shots: int = 1


def test_config_keys_are_refused_with_their_dotted_key():
    require_positive_ints(_Section(), "eval", ("ways", "shots"))
    with pytest.raises(ConfigError, match=r"'eval.shots': got 0, expected an integer >= 1"):
        require_positive_ints(_Section(shots=0), "eval", ("ways", "shots"))
    with pytest.raises(ConfigError, match=r"'ways': got True"):
        require_positive_ints(_Section(ways=True), "", ("ways",))


@pytest.mark.parametrize("name", config_names())
def test_every_shipped_experiment_resolves_with_the_shared_eval_settings(name):
    config = resolve_config(read_raw(name))
    assert isinstance(config.eval, EvalConfig)
    raw = read_raw(name)
    set_key(raw, "eval.episodes=1")
    with pytest.raises(ConfigError, match=r"'eval.episodes': got 1, expected an integer >= 2"):
        resolve_config(raw)
