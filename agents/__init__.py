"""Named agent recipes: each joins a task distribution, a model and a learner.

A recipe module defines ``Config`` (the experiment's configuration dataclass, with ``name``,
``agent``, ``seed``, ``train`` and ``sampler`` fields) and ``build(config) -> Agent``; the
``agent:`` key of a config file names the recipe. Each is registered with the library as an
entry point of the group ``metarl.recipes`` in ``pyproject.toml`` (see :mod:`metarl.registry`).
"""
