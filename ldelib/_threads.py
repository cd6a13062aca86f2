"""How many CPU threads a training loop uses: one for small steps, torch's setting otherwise.

A training step of a small network is a few dozen small kernels. Split over threads, each
kernel ends in a barrier where the threads spin until the slowest arrives; on a machine
whose cores are busy with other work, a thread that is descheduled holds every other one
at that barrier. Measured on 2 cores (``benchmarks/threads.py``, results in
``benchmarks/results/threads.md``): a small ``CausalConvMDN`` fit took 0.9 s at one or two
threads on a quiet machine, and 1.5 s at one thread against 5.5 to 25 s at two on a
loaded one. Large steps do divide their work, so they keep torch's setting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["SMALL_STEP_FLOPS", "epoch_seconds", "step_flops", "training_threads"]

#: Below this many multiply-adds per training step (forward), one thread trains faster,
#: or no slower, on every machine measured; see the module docstring.
SMALL_STEP_FLOPS = 2e8


def step_flops(module: nn.Module, rows: int, positions: int = 1) -> float:
    """Multiply-adds of one forward pass: every weight used once per row and position."""
    weights = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return float(weights) * rows * positions


@contextmanager
def training_threads(flops: float, device: torch.device) -> Iterator[int]:
    """One intra-op thread for the block when its steps are small and on the CPU.

    Scoped: torch's thread count is restored when the block ends, however it ends, so a
    user's own ``torch.set_num_threads`` is never changed for long. It is a process-wide
    setting, so other threads of the process train on one thread for the block's duration
    too. Yields the thread count in force.
    """
    before = torch.get_num_threads()
    if device.type != "cpu" or flops >= SMALL_STEP_FLOPS or before == 1:
        yield before
        return
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(before)


def epoch_seconds(
    make: Callable[[], nn.Module],
    n_features: int,
    batch: int,
    n_rows: int,
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    """Seconds an epoch of ``n_rows`` would take to train a network that ``make``
    builds (mapping rows to log-densities) with Adam at ``batch`` rows per step, on the
    threads its training would use: the fastest of three timed steps of a throwaway
    network (after an untimed one, which allocates), times the batches. The fastest, not
    the mean: another process slows a step, never speeds one. Beside another
    single-threaded process on 2 cores, the mean of two steps estimated an epoch of the
    64-D digits (900 rows) at 1.41 to 2.23 s in 20 tries, all past the random start's
    threshold there (1.1 s: it was not trained on one seed of the suite, 65.0 nats per
    image against 89.0 with it), where its epochs took 0.6 s; the fastest of three, 0.62
    to 0.74 s. Torch's global generator is left as it was, the network's
    initialisation included."""
    batch = min(batch, n_rows)
    cuda = device.type == "cuda"
    seconds = math.inf
    with torch.random.fork_rng(devices=[device] if cuda else []):
        module = make().to(device=device, dtype=dtype)
        optimizer = torch.optim.Adam(module.parameters())
        z = torch.randn(batch, n_features, device=device, dtype=dtype)
        with training_threads(step_flops(module, batch, n_features), device):
            for step in range(4):
                if cuda:
                    torch.cuda.synchronize(device)
                began = time.perf_counter()
                optimizer.zero_grad()
                (-module(z).mean()).backward()
                optimizer.step()
                if cuda:
                    torch.cuda.synchronize(device)
                if step > 0:
                    seconds = min(seconds, time.perf_counter() - began)
    return seconds * -(-n_rows // batch)
