r"""Data-parallel training over several processes, on top of :mod:`torch.distributed`.

A fit launched with ``torchrun --nproc_per_node N`` runs the same program in :math:`N`
processes (*ranks*). Each rank holds a full copy of the model, trains on its own share
of every minibatch, and :class:`~torch.nn.parallel.DistributedDataParallel` averages the
gradients, so all copies take the same optimiser steps. What remains for the training
loop is to keep the ranks in lockstep: give them equal shares of the same global batches
(:func:`shard`), make every decision that ends or changes training from numbers all
ranks agree on (:func:`all_reduce_mean_score`, :func:`broadcast_flag`), and let one rank
write files (:attr:`Context.is_main`). A rank that takes one step more than the others
waits for the others forever.

Outside ``torchrun`` nothing here communicates: :func:`context` describes a lone process
and every function is a cheap identity, so the same training loop serves both cases.

References:
    | PyTorch Distributed: Experiences on Accelerating Data Parallel Training (Li et al., 2020)
    | https://arxiv.org/abs/2006.15704

    | torchrun (Elastic Launch)
    | https://pytorch.org/docs/stable/elastic/run.html

Example:
    >>> ctx = context()  # a plain ``python`` process
    >>> ctx
    Context(rank=0, world_size=1, local_rank=0, backend=None)
    >>> ctx.is_main, ctx.is_distributed
    (True, False)
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "Context",
    "all_reduce_mean_score",
    "all_reduce_sum",
    "barrier",
    "broadcast_flag",
    "broadcast_int",
    "context",
    "init",
    "local_device",
    "local_rows",
    "per_rank_batch",
    "shard",
    "shutdown",
    "unwrap",
    "wrap",
]

#: Environment variables ``torchrun`` sets in every process it starts.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    """Where the current process stands in a (possibly one-process) training job.

    Attributes:
        rank: Index of this process among all processes, from 0.
        world_size: Number of processes.
        local_rank: Index of this process among those on its machine (the GPU it uses).
        backend: The process group's backend (``"gloo"``, ``"nccl"``), or ``None``
            when no process group exists.

    Example:
        >>> ctx = Context(rank=1, world_size=2, local_rank=1, backend="gloo")
        >>> ctx.is_distributed, ctx.is_main
        (True, False)
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str | None

    @property
    def is_distributed(self) -> bool:
        """Whether other processes take part (and collectives communicate)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0: the one process that prints and writes files."""
        return self.rank == 0


_ALONE = Context(rank=0, world_size=1, local_rank=0, backend=None)


def _launch_variable(name: str, default: str | None = None) -> int:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(
            f"WORLD_SIZE is set but {name} is not: launch with torchrun, or set all of "
            f"{', '.join(LAUNCH_VARIABLES)}."
        )
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"The environment variable {name}={value!r} is not an integer.") from None


def context() -> Context:
    """The current process's :class:`Context`; reads, never initialises anything.

    With a default process group (see :func:`init`), its rank and size. Otherwise the
    ``torchrun`` environment variables, with ``backend=None``: ranks already know who
    writes files, but collectives raise until :func:`init` is called. Without them, a
    lone process, ``Context(0, 1, 0, None)``.
    """
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        # LOCAL_RANK only exists under a launcher; a group built by hand on one machine
        # has its ranks as local ranks.
        local_rank = _launch_variable("LOCAL_RANK", str(rank))
        return Context(rank, dist.get_world_size(), local_rank, str(dist.get_backend()))
    world_size = _launch_variable("WORLD_SIZE", "1")
    if world_size <= 1:
        return _ALONE
    rank = _launch_variable("RANK")
    return Context(rank, world_size, _launch_variable("LOCAL_RANK", "0"), None)


def local_device(device: torch.device, ctx: Context) -> torch.device:
    """The device this rank computes on: ``cuda`` without an index means this rank's GPU.

    Example:
        >>> local_device(torch.device("cuda"), Context(3, 4, 1, "nccl"))
        device(type='cuda', index=1)
        >>> local_device(torch.device("cpu"), Context(3, 4, 1, "gloo"))
        device(type='cpu')
    """
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def init(device: torch.device, *, timeout: timedelta | None = None) -> Context:
    """Join the job ``torchrun`` launched, once; return this process's :class:`Context`.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), initialises the default
    process group from the environment (``env://``) with ``"nccl"`` when ``device`` is a
    GPU and NCCL is available, else ``"gloo"``; on a GPU it also makes this rank's GPU
    (:func:`local_device`) the current one, which NCCL needs to keep ranks on distinct
    devices. Idempotent: with a group already initialised (by an earlier call or by the
    user), that group is used as it is. Outside ``torchrun`` it does nothing.

    Arguments:
        device: The device the model trains on.
        timeout: How long collectives wait for the other ranks before failing (the
            :func:`torch.distributed.init_process_group` default when ``None``).
    """
    if dist.is_available() and dist.is_initialized():
        return context()
    ctx = context()
    if not ctx.is_distributed:
        return ctx
    if not dist.is_available():
        raise RuntimeError(
            "This torch build has no torch.distributed; run a single process (python, not "
            "torchrun) or install a torch build with distributed support."
        )
    missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={ctx.world_size} but {', '.join(missing)} not set: launch with "
            "torchrun, which sets them."
        )
    gpu = device.type == "cuda"
    backend = "nccl" if gpu and dist.is_nccl_available() else "gloo"
    if gpu:
        torch.cuda.set_device(local_device(device, ctx))
    dist.init_process_group(backend, init_method="env://", timeout=timeout)
    return context()


def shutdown() -> None:
    """Destroy the default process group, if any (call once training is over)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(global_batch: int, ctx: Context) -> int:
    """Rows per rank and step when ``global_batch`` rows make one step across all ranks.

    Raises:
        TypeError: If ``global_batch`` is not an integer.
        ValueError: If ``global_batch`` cannot be split into equal shares, one per rank.

    Example:
        >>> per_rank_batch(256, Context(0, 4, 0, "gloo"))
        64
    """
    if not isinstance(global_batch, numbers.Integral) or isinstance(global_batch, bool):
        raise TypeError(f"The batch size must be an integer, got {global_batch!r}.")
    if global_batch < 1:
        raise ValueError(f"The batch size must be a positive integer, got {global_batch!r}.")
    global_batch, n = int(global_batch), ctx.world_size
    if global_batch < n:
        raise ValueError(
            f"batch_size={global_batch} is smaller than the number of processes ({n}): each "
            f"process needs at least one row per step. Use batch_size >= {n}, or fewer "
            "processes."
        )
    if global_batch % n:
        below, above = global_batch - global_batch % n, global_batch + n - global_batch % n
        raise ValueError(
            f"batch_size={global_batch} does not split evenly over {n} processes: use a "
            f"multiple of {n} (e.g. {below} or {above}), or a number of processes that "
            f"divides {global_batch}."
        )
    return global_batch // n


def shard(indices: Tensor, ctx: Context, global_batch: int) -> Tensor:
    r"""This rank's share of a global order of rows, batch by batch.

    All ranks draw the same order (the same seeded permutation) and cut it into global
    batches of ``global_batch`` rows, the batches a single process would train on.
    With :math:`W` ranks and :math:`b =` ``global_batch // W``
    (:func:`per_rank_batch`), rank :math:`r` gets rows :math:`[rb, (r+1)b)` of each full
    global batch. A last, shorter global batch of :math:`m` rows is cut into :math:`W`
    equal slices of :math:`s = \lfloor m / W \rfloor` rows, rank :math:`r` getting rows
    :math:`[rs, (r+1)s)`, and its :math:`m - Ws < W` trailing rows are dropped (all of
    it when :math:`m < W`).

    Hence ``shard(...).split(b)`` gives every rank the same number of steps (DDP waits
    for all ranks at each step), the union of the ranks' step-:math:`t` batches is global
    batch :math:`t` (less the dropped rows), and since the slices are equal, DDP's mean of
    the ranks' mean losses is the mean loss over that global batch: the same gradient as
    one process. At most :math:`W - 1` rows per epoch are dropped; with a fresh order
    each epoch, different ones.

    Arguments:
        indices: The global order, a 1-D tensor identical on every rank.
        ctx: The process's context.
        global_batch: Rows per step across all ranks (the model's ``batch_size``).

    Returns:
        This rank's rows, in order; ``indices`` itself in a single process.

    Example:
        >>> order = torch.arange(11)  # global batches [0..3] [4..7] [8 9 10]
        >>> shard(order, Context(0, 2, 0, "gloo"), 4).split(2)
        (tensor([0, 1]), tensor([4, 5]), tensor([8]))
        >>> shard(order, Context(1, 2, 1, "gloo"), 4).split(2)
        (tensor([2, 3]), tensor([6, 7]), tensor([9]))
    """
    if indices.dim() != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(indices.shape)}.")
    per_rank = per_rank_batch(global_batch, ctx)
    if not ctx.is_distributed:
        return indices
    n_full = len(indices) // global_batch
    # (batch, rank, row): rank r's column of every full global batch, in batch order.
    full = indices[: n_full * global_batch].reshape(n_full, ctx.world_size, per_rank)
    rest = indices[n_full * global_batch :]
    s = len(rest) // ctx.world_size
    return torch.cat([full[:, ctx.rank].reshape(-1), rest[ctx.rank * s : (ctx.rank + 1) * s]])


def local_rows(n: int, ctx: Context) -> slice:
    r"""This rank's contiguous block of ``n`` rows, for work without lockstep steps.

    Validation and scoring need every row exactly once but no gradient synchronisation,
    so the blocks may differ by one row: rank :math:`r` gets rows
    :math:`[\lfloor rn/W \rfloor, \lfloor (r+1)n/W \rfloor)`. Contiguous blocks keep
    reads from a memory-mapped file sequential. Reduce the results with
    :func:`all_reduce_mean_score` or :func:`all_reduce_sum`.

    Example:
        >>> [local_rows(10, Context(r, 3, r, "gloo")) for r in range(3)]
        [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    return slice(ctx.rank * n // ctx.world_size, (ctx.rank + 1) * n // ctx.world_size)


def _require_group(ctx: Context) -> torch.device:
    """The device collectives of ``ctx`` exchange tensors on; raises without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"Rank {ctx.rank} of {ctx.world_size} has no process group: call "
            "ldelib.distributed.init(device) before training."
        )
    # NCCL only moves GPU tensors (init made this rank's GPU current); gloo, CPU ones.
    if ctx.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Tensor, ctx: Context) -> Tensor:
    """The element-wise sum of ``values`` over all ranks, on every rank.

    ``values`` must have the same shape on every rank; they travel on the backend's
    device (a GPU for NCCL, which moves no CPU tensors; the CPU for gloo) and come back
    on their own. The input is left unchanged; in a single process the result is a copy.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]), context())
        tensor([1., 2.])
    """
    out = values.detach().clone()
    if ctx.is_distributed:
        sent = out.to(_require_group(ctx))
        dist.all_reduce(sent, op=dist.ReduceOp.SUM)
        out = sent.to(values.device)
    return out


def all_reduce_mean_score(total: float, count: int, ctx: Context) -> float:
    """The mean over all ranks' rows: the summed ``total`` over the summed ``count``.

    For validation scores: each rank scores its rows (:func:`local_rows`) and passes
    their sum and number; every rank gets the same mean, so early stopping, learning
    rate decay and best-weight selection take the same decisions everywhere. A NaN or
    infinite total on any rank makes the result non-finite on all of them. Reduced in
    float64, so the result does not depend on the number of ranks beyond rounding.

    Raises:
        ValueError: If no rank scored any row.

    Example:
        >>> all_reduce_mean_score(-12.0, 4, context())
        -3.0
    """
    if ctx.is_distributed:
        device = _require_group(ctx)
        both = torch.tensor([float(total), float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.SUM)
        total, count = float(both[0]), int(both[1])
    if count <= 0:
        raise ValueError("No rows were scored on any process: the validation set is empty.")
    return float(total) / count


def broadcast_int(value: int, ctx: Context) -> int:
    """Rank 0's ``value`` on every rank (e.g. a seed drawn from unseeded randomness).

    Ranks must draw the same shuffles and validation split; with ``random_state=None``
    each would draw its own, so rank 0's seed is shared instead.

    Example:
        >>> broadcast_int(7, context())
        7
    """
    if ctx.is_distributed:
        device = _require_group(ctx)
        box = torch.tensor([int(value)], dtype=torch.int64, device=device)
        dist.broadcast(box, src=0)
        value = int(box.item())
    return int(value)


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's ``flag`` on every rank, for decisions all ranks must take together.

    Clocks differ between processes: a time budget checked on each rank could stop one
    rank an epoch before the others, which would then wait for it forever. Rank 0 decides.

    Example:
        >>> broadcast_flag(True, context())
        True
    """
    return bool(broadcast_int(int(bool(flag)), ctx))


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a file)."""
    if ctx.is_distributed:
        _require_group(ctx)
        dist.barrier()


def wrap(module: nn.Module, ctx: Context, device: torch.device, **options: Any) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed.

    The module must already be on ``device`` (:func:`local_device` for a GPU). DDP
    copies rank 0's parameters and buffers to every rank here, then averages gradients
    during ``backward``: the loss must come from calling the *wrapped* module (its
    ``forward``), not another of its methods or the inner module, or gradients are not
    averaged. Every parameter must take part in the loss at each step, unless
    ``find_unused_parameters=True`` is among the ``options`` (keyword arguments of
    :class:`~torch.nn.parallel.DistributedDataParallel`; ``broadcast_buffers=False``
    saves a broadcast per step for buffers that never change). In a single process,
    ``module`` itself is returned.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> wrap(net, context(), torch.device("cpu")) is net
        True
    """
    if not ctx.is_distributed:
        return module
    _require_group(ctx)
    device = local_device(device, ctx)
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, **options)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a :func:`wrap` (for ``state_dict``, saving and evaluation).

    Example:
        >>> net = nn.Linear(2, 1)
        >>> unwrap(net) is net
        True
    """
    if isinstance(module, DistributedDataParallel):
        inner: nn.Module = module.module
        return inner
    return module
