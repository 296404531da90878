"""Where and how the maths runs: device, mixed precision, memory format, process rank."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from comp.errors import CompError
from comp.recipe import TrainConfig


@dataclass(frozen=True)
class Runtime:
    """Resolved execution settings, passed explicitly (no global state), DDP-ready."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return images.to(self.device, non_blocking=True, memory_format=fmt)


def resolve_device(spec: str) -> torch.device:
    """"auto" → the first CUDA device if there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise CompError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CompError(f"device {spec!r} asked for, but CUDA is not available on this machine")
    return device


def resolve_runtime(cfg: TrainConfig, device_override: str | None = None, rank: int = 0,
                    world_size: int = 1, local_rank: int = 0) -> Runtime:
    """Device from the recipe (or ``--device``); bf16 autocast and channels_last on CUDA only.

    Under DDP each process takes the CUDA device of its local rank.
    """
    device = resolve_device(device_override or cfg.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    cuda = device.type == "cuda"
    amp = {"auto": torch.bfloat16 if cuda else None, "bf16": torch.bfloat16,
           "fp16": torch.float16, "off": None}[cfg.amp]
    if amp is torch.float16 and not cuda:
        amp = None  # fp16 autocast on a CPU is slower than fp32 and needs no scaler
    if cuda:
        torch.backends.cudnn.benchmark = not cfg.deterministic
    return Runtime(device=device, amp_dtype=amp, channels_last=cuda and cfg.channels_last,
                   rank=rank, world_size=world_size)
