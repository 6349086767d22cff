"""Recipes reach the library by registration: entry points for the shipped ones, register()
for a user's."""

import types
from pathlib import Path

import pytest

from metarl import registry
from metarl.config import config_names, read_raw
from metarl.errors import ConfigError

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def test_every_recipe_module_and_every_shipped_config_has_an_entry_point():
    recipes = {f.stem for f in AGENTS.glob("*.py") if "def build(" in f.read_text()}
    loaded = {registry.get_recipe(name).__name__.split(".")[-1] for name in registry.recipe_names()}
    assert recipes == loaded
    assert {read_raw(name)["agent"] for name in config_names()} <= set(registry.recipe_names())


def test_a_registered_recipe_is_found_and_an_unknown_one_named(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    mine = types.SimpleNamespace(Config=object, build=lambda config: None)
    registry.register("mine", mine)
    assert registry.get_recipe("mine") is mine and "mine" in registry.recipe_names()
    registry.register("by-path", "agents.rl2_bandit")  # a dotted path, imported on first use
    assert registry.get_recipe("by-path").__name__ == "agents.rl2_bandit"
    with pytest.raises(ConfigError, match="unknown agent 'nope'; expected one of .*rl2-bandit"):
        registry.get_recipe("nope")


def test_no_recipes_at_all_says_how_to_install_them(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "entry_points", lambda **kwargs: [])
    with pytest.raises(ConfigError, match=r"no recipes are installed .*pip install -e \."):
        registry.get_recipe("rl2-bandit")
