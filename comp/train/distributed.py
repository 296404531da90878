"""Distributed training with PyTorch's own engine: torchrun environment → process group.

``torchrun --nproc_per_node=N -m comp fit RECIPE`` starts N copies of ``comp fit``; each reads
its rank from the environment torchrun sets. Backend: NCCL on CUDA, Gloo on the CPU. Only
rank 0 writes files; the helpers here gather what the ranks computed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from comp.model.runtime import Runtime


def env_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) outside it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def init_process_group(runtime: Runtime) -> None:
    """Join the group torchrun set up (idempotent; nothing to do for a single process)."""
    if runtime.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if runtime.device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def active(runtime: Runtime) -> bool:
    return runtime.world_size > 1 and dist.is_initialized()


def barrier(runtime: Runtime) -> None:
    if active(runtime):
        dist.barrier()


def broadcast(obj: Any, runtime: Runtime) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not active(runtime):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, runtime: Runtime) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active(runtime):
        return [obj]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], runtime: Runtime) -> list[float]:
    """Element-wise sum over ranks (for loss totals and stop/NaN votes)."""
    if not active(runtime):
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=runtime.device if runtime.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def shutdown(runtime: Runtime, *, together: bool = True) -> None:
    """Leave the process group.

    ``together`` first waits for every rank: a rank that tears down its Gloo connections while a
    peer is still using them (rank 0 writing files after the last collective) can abort with
    "terminate called without an active exception". On an error path pass ``together=False``:
    the peers may be gone, and waiting for them would hang instead of letting torchrun stop them.
    """
    if active(runtime):
        if together:
            dist.barrier()
        dist.destroy_process_group()
