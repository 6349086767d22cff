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
print(faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_activations_are_reused_without_page_faults():
    def faults(mode: str) -> int:
        result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    assert faults("default") > 100_000  # 64 MB are ~15,600 pages, faulted in again each time
    assert faults("keep") < 1_000
