"""metarl: meta-reinforcement learning and few-shot learning on Ray rollout workers.

In Python, one call trains an experiment and one evaluates it::

    import metarl
    run = metarl.train("snail-bandit", time_limit=5)
    report = metarl.evaluate(run.path)
"""

from typing import Any

__all__ = ["Run", "evaluate", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``metarl --help`` and the config tools stay light.
    if name in ("train", "Run"):
        from metarl import trainer

        return getattr(trainer, name)
    if name == "evaluate":
        from metarl.eval.report import evaluate_run

        return evaluate_run
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")
