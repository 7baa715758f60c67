"""Training processes keep freed tensor buffers for reuse instead of page-faulting them in again."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run import environment

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")

ROOT = Path(__file__).resolve().parent.parent

# Five evaluation forwards of a 256-row window batch (the small preset's width): its [rows, width, d_ff]
# activations are 52 MB, above the largest mmap threshold glibc adapts to by itself (32 MiB on 64-bit).
PROBE = """
import pathlib, resource, sys
import torch
mode = sys.argv[1]
if mode == "tuned":
    from harness.run.allocator import keep_freed_buffers
    assert keep_freed_buffers()
elif mode == "worker":
    from harness.run.workers import prepare_process
    prepare_process(pathlib.Path(sys.argv[2]), 1)
from gainakt.model import GainAKT2Exp
torch.manual_seed(0)
model = GainAKT2Exp(num_c=50, d_model=128, n_heads=4, n_blocks=2, d_ff=256).eval()
q = torch.randint(0, 50, (256, 199))
with torch.inference_mode():
    model(q, q % 2, q, heads=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        model(q, q % 2, q, heads=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(*args: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.fixture(scope="module")
def default_faults() -> int:
    return _faults("plain")


def test_default_malloc_faults_large_buffers_in_every_batch(default_faults: int) -> None:
    # The condition the fix removes: the large activations are fresh mmaps in every forward.
    assert default_faults > 100_000


def test_kept_buffers_are_reused(default_faults: int) -> None:
    assert _faults("tuned") < default_faults / 4


def test_training_workers_keep_freed_buffers(base_run: Path, default_faults: int) -> None:
    assert _faults("worker", str(base_run)) < default_faults / 4


def test_environment_records_the_allocator() -> None:
    pairs = dict(environment.capture(runtime="local", dataset={"name": "synthetic"}))
    assert pairs["allocator"].startswith("glibc malloc, training processes: mmap_threshold=")
