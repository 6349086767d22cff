import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter: pytest's own threads change where glibc serves the blocks.
PROBE = """
import resource, sys, torch
from metarl.allocator import keep_freed_memory

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(16_000_000).sum()  # 64 MB, above glibc's largest dynamic mmap threshold
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
if sys.argv[1] == "keep":
    assert keep_freed_memory()
    faults()
if sys.argv[1] == "turned-off":
    assert not keep_freed_memory()
print(faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_activations_are_reused_without_page_faults():
    def faults(mode: str, **env: str) -> int:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, mode],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    assert faults("default") > 100_000  # 64 MB are ~15,600 pages, faulted in again each time
    assert faults("keep") < 1_000
    assert faults("turned-off", METARL_KEEP_FREED_MEMORY="0") > 100_000


def test_the_fewshot_recipe_keeps_freed_memory_when_its_agent_is_built(omniglot_data, monkeypatch):
    import agents.fewshot_omniglot as fewshot
    from metarl.config import from_dict

    calls = []
    monkeypatch.setattr(fewshot, "keep_freed_memory", lambda: calls.append("set") or True)
    raw = {
        "name": "protonet-omniglot",
        "agent": "fewshot-omniglot",
        "data": {"dir": str(omniglot_data), "protocol": "lake"},
        "learner": {"kind": "protonet", "channels": 8},
    }
    fewshot.FewShotAgent(from_dict(fewshot.Config, raw), progress=False)
    assert calls == ["set"]


def test_the_rl2_recipes_keep_freed_memory_when_their_agent_is_built(monkeypatch):
    import agents.rl2_agent as rl2
    from metarl.experiment import build_config, resolve_config
    from metarl.registry import get_recipe

    calls = []
    monkeypatch.setattr(rl2, "keep_freed_memory", lambda: calls.append("set") or True)
    config = resolve_config(build_config("lstm-bandit", {"model.hidden_size": 8}))
    get_recipe(config.agent).build(config).close()
    assert calls == ["set"]
