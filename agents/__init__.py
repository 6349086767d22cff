"""Named agent recipes: each joins a task distribution, a model and a learner.

A recipe module defines ``Config`` (the experiment's configuration dataclass, with ``name``,
``agent``, ``seed``, ``train`` and ``sampler`` fields) and ``build(config) -> Agent``; the
``agent:`` key of a config file names the recipe.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from metarl.errors import ConfigError

RECIPES = {
    "rl2-bandit": "agents.rl2_bandit",
    "rl2-maze": "agents.rl2_maze",
    "fewshot-omniglot": "agents.fewshot_omniglot",
    "maml-rl": "agents.maml_rl",
    "online-omniglot": "agents.online_omniglot",
    "rllib-rl2": "agents.rllib_rl2",
}


def get_recipe(name: str) -> ModuleType:
    """The recipe module for ``agent: NAME``."""
    if name not in RECIPES:
        raise ConfigError(
            f"config key 'agent': unknown agent {name!r}; "
            f"expected one of {', '.join(sorted(RECIPES))}"
        )
    return importlib.import_module(RECIPES[name])
