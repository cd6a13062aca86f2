"""ldelib.distributed: the lone-process identities, the sharding rule, and a real
two-process gloo job whose data-parallel training matches one process step for step."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from torch import nn

from ldelib import distributed
from ldelib.distributed import LAUNCH_VARIABLES, Context

CPU = torch.device("cpu")
ALONE = Context(rank=0, world_size=1, local_rank=0, backend=None)


@pytest.fixture
def no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain ``python`` process, whatever launched pytest."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ------------------------------------------------------------------ one process


def test_context_of_a_lone_process(no_launch):
    assert distributed.context() == ALONE
    assert distributed.init(CPU) == ALONE
    assert not dist.is_initialized()  # nothing to join: no group was created
    assert ALONE.is_main and not ALONE.is_distributed


def test_context_reads_torchrun_variables_without_initialising(monkeypatch):
    for name, value in zip(LAUNCH_VARIABLES, ["1", "2", "1", "127.0.0.1", "1"], strict=True):
        monkeypatch.setenv(name, value)
    ctx = distributed.context()
    assert ctx == Context(rank=1, world_size=2, local_rank=1, backend=None)
    assert ctx.is_distributed and not ctx.is_main
    assert not dist.is_initialized()
    # Collectives need the group init() creates; they say so rather than hang or lie.
    with pytest.raises(RuntimeError, match=r"init\(device\)"):
        distributed.broadcast_flag(True, ctx)
    with pytest.raises(RuntimeError, match=r"init\(device\)"):
        distributed.all_reduce_mean_score(1.0, 1, ctx)


def test_context_rejects_a_partial_launch(monkeypatch, no_launch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.context()
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK"):
        distributed.context()


def test_lone_process_collectives_are_identities(no_launch):
    values = torch.tensor([1.0, -2.0])
    summed = distributed.all_reduce_sum(values, ALONE)
    assert torch.equal(summed, values) and summed is not values
    summed += 1  # a copy: the input is left alone
    assert torch.equal(values, torch.tensor([1.0, -2.0]))
    assert distributed.all_reduce_mean_score(-9.0, 3, ALONE) == -3.0
    assert distributed.broadcast_flag(True, ALONE) is True
    assert distributed.broadcast_flag(False, ALONE) is False
    assert distributed.broadcast_int(12, ALONE) == 12
    distributed.barrier(ALONE)
    with pytest.raises(ValueError, match="empty"):
        distributed.all_reduce_mean_score(0.0, 0, ALONE)
    net = nn.Linear(2, 1)
    assert distributed.wrap(net, ALONE, CPU) is net
    assert distributed.unwrap(net) is net


def test_local_device():
    ctx = Context(rank=5, world_size=8, local_rank=1, backend="nccl")
    assert distributed.local_device(torch.device("cuda"), ctx) == torch.device("cuda", 1)
    assert distributed.local_device(torch.device("cuda", 0), ctx) == torch.device("cuda", 0)
    assert distributed.local_device(CPU, ctx) == CPU


def test_shard_in_one_process_is_the_order():
    order = torch.randperm(37, generator=torch.Generator().manual_seed(0))
    assert torch.equal(distributed.shard(order, ALONE, 8), order)
    assert distributed.per_rank_batch(8, ALONE) == 8


@pytest.mark.parametrize(
    ("batch", "world", "match"),
    [
        (1, 2, "smaller than the number of processes"),
        (5, 2, r"multiple of 2 \(e\.g\. 4 or 6\)"),
        (10, 3, r"multiple of 3 \(e\.g\. 9 or 12\)"),
        (0, 1, "positive"),
        (-4, 2, "positive"),
    ],
)
def test_per_rank_batch_errors(batch, world, match):
    ctx = Context(rank=0, world_size=world, local_rank=0, backend="gloo")
    with pytest.raises(ValueError, match=match):
        distributed.per_rank_batch(batch, ctx)


def test_per_rank_batch_types():
    ctx = Context(rank=0, world_size=2, local_rank=0, backend="gloo")
    assert distributed.per_rank_batch(np.int64(6), ctx) == 3
    for bad in (6.0, True, "6"):
        with pytest.raises(TypeError, match="integer"):
            distributed.per_rank_batch(bad, ctx)
    with pytest.raises(ValueError, match="1-D"):
        distributed.shard(torch.zeros(2, 3, dtype=torch.long), ctx, 2)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 12, 13, 29, 30, 31, 100])
@pytest.mark.parametrize("multiple", [1, 2, 5])
def test_shard_steps_union_to_the_global_batches(world, n, multiple):
    global_batch = world * multiple
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    per_rank = distributed.per_rank_batch(global_batch, Context(0, world, 0, "gloo"))
    steps = [
        distributed.shard(order, Context(r, world, r, "gloo"), global_batch).split(per_rank)
        for r in range(world)
    ]
    # Every rank takes the same number of steps (DDP synchronises each one) ...
    assert len({len(s) for s in steps}) == 1
    global_batches = list(order.split(global_batch))
    kept = 0
    for t, batch in enumerate(global_batches):
        if t == len(steps[0]):
            # ... and only a last global batch with fewer rows than ranks is skipped.
            assert t == len(global_batches) - 1 and len(batch) < world
            break
        # Equal slices, so the mean of the ranks' means is the global mean.
        assert len({len(s[t]) for s in steps}) == 1
        union = torch.cat([s[t] for s in steps])
        # Rank r's slice is the r-th of the global batch; the rest is dropped.
        assert torch.equal(union, batch[: len(union)])
        assert len(batch) - len(union) == (
            0 if t < len(global_batches) - 1 else len(batch) % world
        )
        kept += len(union)
    assert n - kept == (n % global_batch) % world < world


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 11])
def test_local_rows_partition(world, n):
    blocks = [distributed.local_rows(n, Context(r, world, r, "gloo")) for r in range(world)]
    assert [i for b in blocks for i in range(n)[b]] == list(range(n))
    sizes = [len(range(n)[b]) for b in blocks]
    assert max(sizes) - min(sizes) <= 1


# ------------------------------------------------------------------ two processes

N_ROWS, GLOBAL_BATCH, EPOCHS, LR = 23, 6, 3, 0.1  # 23 = 3 full batches + 5 (one dropped)


def _problem() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(N_ROWS, 3, generator=gen, dtype=torch.float64)
    y = X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.1 * torch.randn(
        N_ROWS, 1, generator=gen, dtype=torch.float64
    )
    return X, y


def _net(seed: int) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 1).double()


def _train_distributed(ctx: Context) -> dict[str, torch.Tensor]:
    """SGD on sharded batches; each rank starts from different weights, which DDP
    replaces with rank 0's."""
    X, y = _problem()
    model = distributed.wrap(_net(seed=1 + ctx.rank), ctx, CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    shuffle = torch.Generator().manual_seed(7)  # the same on every rank
    per_rank = distributed.per_rank_batch(GLOBAL_BATCH, ctx)
    for _ in range(EPOCHS):
        order = torch.randperm(N_ROWS, generator=shuffle)
        for index in distributed.shard(order, ctx, GLOBAL_BATCH).split(per_rank):
            loss = (model(X[index]) - y[index]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in distributed.unwrap(model).state_dict().items()}


def _train_reference(world: int) -> dict[str, torch.Tensor]:
    """One process on the global batches, the last cut to a multiple of ``world``."""
    X, y = _problem()
    model = _net(seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    shuffle = torch.Generator().manual_seed(7)
    for _ in range(EPOCHS):
        for batch in torch.randperm(N_ROWS, generator=shuffle).split(GLOBAL_BATCH):
            index = batch[: len(batch) - len(batch) % world]
            loss = (model(X[index]) - y[index]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    """One rank of the job, as torchrun would start it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx = distributed.init(CPU, timeout=timedelta(seconds=60))
    try:
        results: dict[str, object] = {
            "context": ctx,
            "again": distributed.init(CPU),  # idempotent: the same group
            "read": distributed.context(),
            "sum": distributed.all_reduce_sum(torch.tensor([1.0 + rank, 10.0 * rank]), ctx),
            # rank 0 scores 1 row at -3, rank 1 scores 3 rows at -3: the mean is -3.
            "score": distributed.all_reduce_mean_score([-3.0, -9.0][rank], [1, 3][rank], ctx),
            "flags": [distributed.broadcast_flag(f, ctx) for f in (rank == 0, rank == 1)],
            "seed": distributed.broadcast_int(100 + rank, ctx),
            "params": _train_distributed(ctx),
        }
        distributed.barrier(ctx)
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()
    # Leave without the interpreter's teardown: gloo's worker threads, destroyed during it,
    # sometimes abort the process ("terminate called without an active exception", seen
    # in 2 of 6 full runs on a loaded 2-core machine) after every result is written.
    os._exit(0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.network  # the two ranks meet on a loopback port
@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo")
def test_two_gloo_processes_train_like_one(tmp_path):
    job = tmp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120  # a deadlock fails the test instead of hanging it
    try:
        while not job.join(timeout=1):  # raises if a worker raised
            assert time.monotonic() < deadline, "the two ranks did not finish: deadlock?"
    finally:
        for process in job.processes:
            if process.is_alive():
                process.terminate()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r, result in enumerate(ranks):
        assert result["context"] == Context(rank=r, world_size=2, local_rank=r, backend="gloo")
        assert result["again"] == result["read"] == result["context"]
        assert torch.equal(result["sum"], torch.tensor([3.0, 10.0]))
        assert result["score"] == -3.0
        assert result["flags"] == [True, False]
        assert result["seed"] == 100
    reference = _train_reference(world=2)
    for name, value in reference.items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name])
        torch.testing.assert_close(ranks[0]["params"][name], value, rtol=0, atol=1e-6)
    # The test means something: training moved the weights away from rank 0's start.
    assert not torch.allclose(reference["weight"], _net(seed=1).weight, atol=1e-3)


@pytest.mark.slow
@pytest.mark.network  # torchrun --standalone rendezvous on a loopback port
def test_torchrun_fits_on_two_processes_like_one(tmp_path):
    """``torchrun --nproc_per_node 2 -m ldelib fit``: rank 0's file loads and scores, and
    with the same global batch it is the model one process trains."""
    import subprocess
    import sys

    import numpy as np

    import ldelib

    rng = np.random.default_rng(0)
    data = tmp_path / "z.npy"
    np.save(data, (rng.normal(size=(3000, 4)) @ rng.normal(size=(4, 4))).astype(np.float32))
    params = ["max_epochs=2", "random_state=0", "device=cpu", "batch_size=256", "verbose=0"]
    args = [a for p in params for a in ("--param", p)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "ldelib", "fit", str(data), *args, "--out", str(tmp_path / "one")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "ldelib",
            "fit",
            str(data),
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("saved") == 1  # only rank 0 writes and reports
    test = np.load(data)[:500]
    single, double = ldelib.load(tmp_path / "one"), ldelib.load(tmp_path / "two")
    np.testing.assert_allclose(double.score_samples(test), single.score_samples(test), atol=1e-4)
    assert double.loss_curve_ == pytest.approx(single.loss_curve_, rel=1e-5)
