"""Where a process runs: the device (CPU, one GPU, DataParallel over several, or one process of a
torchrun launch with DistributedDataParallel), seeding, and unwrapping parallel models."""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from errors import UserError

log = logging.getLogger('interacthand')


@dataclass
class Runtime:
    """Where this process runs: its device, the GPUs of DataParallel, and its rank under torchrun."""
    device: torch.device
    gpu_ids: list[int]
    rank: int = 0
    world_size: int = 1
    distributed: bool = False  # launched by torchrun: DistributedDataParallel, even with one process

    @property
    def main_process(self) -> bool:
        return self.rank == 0


def select_device(gpu_ids: list[int]) -> tuple[torch.device, list[int]]:
    """The device to run on and the GPU ids to use; no CUDA means the CPU, with one warning."""
    if not gpu_ids:
        return torch.device('cpu'), []
    if not torch.cuda.is_available():
        log.warning('CUDA is not available; running on the CPU (pass --gpu cpu to silence this)')
        return torch.device('cpu'), []
    count = torch.cuda.device_count()
    bad = [i for i in gpu_ids if i >= count]
    if bad:
        raise UserError(f"--gpu asks for GPU {bad[0]} but this machine has {count} "
                        f"(ids 0-{count - 1})")
    return torch.device(f'cuda:{gpu_ids[0]}'), gpu_ids


def setup_runtime(gpu_ids: list[int]) -> Runtime:
    """Single process (CPU, one GPU or DataParallel over ``gpu_ids``), or one process of a torchrun
    launch (RANK and WORLD_SIZE set: DistributedDataParallel, one GPU per process, or gloo on the CPU)."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        device, ids = select_device(gpu_ids)
        return Runtime(device, ids)
    import torch.distributed as dist
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local = int(os.environ.get('LOCAL_RANK', '0'))
    use_cuda = bool(gpu_ids) and torch.cuda.is_available()
    if use_cuda:
        gpu = gpu_ids[local % len(gpu_ids)] if len(gpu_ids) > 1 else local
        torch.cuda.set_device(gpu)
        device = torch.device(f'cuda:{gpu}')
    else:
        device = torch.device('cpu')
    if not dist.is_initialized():
        dist.init_process_group('nccl' if use_cuda else 'gloo')
    return Runtime(device, [device.index] if use_cuda else [], rank, world, distributed=True)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model
