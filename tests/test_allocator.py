import resource
import sys

import pytest
import torch

from metarl.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_activations_are_reused_without_page_faults():
    def faults_of_ten_large_allocations() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.ones(16_000_000).sum()  # 64 MB: above glibc's largest dynamic threshold
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert keep_freed_memory()
    faults_of_ten_large_allocations()  # the first one may still fault its pages in
    assert faults_of_ten_large_allocations() < 1000  # 64 MB are ~15,600 pages each
