"""Datasets and DataLoaders as training and testing use them: the configured split, batching per
device layout (one process, DataParallel, DDP shards), worker seeding, and moving batches to the
device."""
from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms

from config import Config
from runtime import Runtime


def seed_worker(worker_id: int) -> None:
    """DataLoader seeds torch and numpy per worker from the loader's generator; so does this for
    Python's random module, keeping augmentation reproducible for a given epoch seed."""
    random.seed(torch.initial_seed() % 2**32)


def build_split(conf: Config, split: str) -> Dataset:
    """The ``'train'`` (``conf.trainset``) or ``'test'`` (``conf.testset``) dataset; built before
    the model, so a missing dataset is reported before any weights are fetched."""
    from registry import build_dataset
    name = conf.trainset if split == 'train' else conf.testset
    return build_dataset(name, transforms.ToTensor(), split, conf)


def build_loader(conf: Config, dataset: Dataset, runtime: Runtime,
                 epoch_seed: int | None = None) -> DataLoader:
    """A loader over ``dataset`` (from :func:`build_split`): shuffled, with full batches only, for
    the training split; per-process shards under DDP; a batch per GPU count under DataParallel."""
    train = dataset.data_split == 'train'
    batch = conf.train_batch_size if train else conf.test_batch_size
    if not runtime.distributed and len(runtime.gpu_ids) > 1:
        batch *= len(runtime.gpu_ids)  # DataParallel splits each batch over the GPUs
    sampler = DistributedSampler(dataset, runtime.world_size, runtime.rank, shuffle=train,
                                 seed=epoch_seed or 0) if runtime.distributed else None
    gen = torch.Generator().manual_seed(epoch_seed) if epoch_seed is not None else None
    return DataLoader(dataset, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=conf.num_thread, pin_memory=runtime.device.type == 'cuda',
                      drop_last=train, generator=gen, worker_init_fn=seed_worker,
                      persistent_workers=False)


def to_device(batch: dict, device: torch.device) -> dict:
    """The tensors of ``batch`` on ``device`` (asynchronous from pinned memory); other values as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
