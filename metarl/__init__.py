"""metarl: meta-reinforcement learning and few-shot learning on Ray rollout workers.

In Python, one call trains an experiment and one evaluates it::

    import metarl
    run = metarl.train("snail-bandit", time_limit=5)
    report = metarl.evaluate(run.path)

and one call classifies new images with a trained few-shot run::

    labels = metarl.classify(run.path, support_images, support_labels, query_images)
"""

from typing import Any

__all__ = ["Run", "classify", "evaluate", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``metarl --help`` and the config tools stay light.
    if name in ("train", "Run"):
        from metarl import trainer

        return getattr(trainer, name)
    if name == "evaluate":
        from metarl.eval.report import evaluate_run

        return evaluate_run
    if name == "classify":
        from metarl.fewshot.inference import classify

        return classify
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")
