"""Recipes by name: how the library finds the recipe that a config's ``agent:`` key names.

The library never imports a recipe (``agents/`` sits above it). Recipes make themselves known
as entry points of the group ``metarl.recipes`` (the shipped ones in ``pyproject.toml``), or
at run time with :func:`register`, as ``gymnasium.register`` does for environments.

A recipe is a module (or any object) with ``Config`` (the experiment's configuration
dataclass, with ``name``, ``agent``, ``seed``, ``train`` and ``sampler`` fields) and
``build(config) -> Agent``. Few-shot recipes also have ``load_classifier(config, state)``,
the trained classifier of a checkpoint's agent state, for :mod:`metarl.fewshot.inference`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from metarl.errors import ConfigError

ENTRY_POINTS = "metarl.recipes"

_registered: dict[str, Any] = {}


def register(name: str, recipe: Any) -> None:
    """Make ``recipe`` (a module, or a module's dotted path, loaded on first use) the one
    that ``agent: NAME`` names; replaces an entry point of the same name."""
    _registered[name] = recipe


def recipe_names() -> list[str]:
    """Every recipe name: registered ones and installed entry points."""
    return sorted({*_registered, *(ep.name for ep in entry_points(group=ENTRY_POINTS))})


def get_recipe(name: str) -> Any:
    """The recipe for ``agent: NAME``; ConfigError naming the valid ones when unknown."""
    if name not in _registered:
        found = entry_points(group=ENTRY_POINTS, name=name)
        if not found and not recipe_names():
            raise ConfigError(
                f"config key 'agent': no recipes are installed to run {name!r} (install "
                "metarl with 'pip install -e .', which registers them as entry points)"
            )
        if not found:
            raise ConfigError(
                f"config key 'agent': unknown agent {name!r}; "
                f"expected one of {', '.join(recipe_names())}"
            )
        _registered[name] = next(iter(found)).load()
    recipe = _registered[name]
    if isinstance(recipe, str):
        recipe = _registered[name] = importlib.import_module(recipe)
    return recipe
