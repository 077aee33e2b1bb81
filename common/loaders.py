"""Datasets and DataLoaders as training and testing use them: the configured split, batching per
device layout (one process, DataParallel, DDP shards), the training order and augmentation seeds,
worker counts, and moving batches to the device.

Training items are asked for by ``(index, seed)`` keys (:class:`TrainingSampler`): the dataset
draws an item's augmentation from a generator seeded by that pair alone, so a training epoch is
the same whatever the number of DataLoader workers, whether they persist across epochs, and
whether the run was resumed.
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision import transforms

from config import Config
from runtime import Runtime

MAX_WORKERS = 16


def build_split(conf: Config, split: str) -> Dataset:
    """The ``'train'`` (``conf.trainset``) or ``'test'`` (``conf.testset``) dataset; built before
    the model, so a missing dataset is reported before any weights are fetched."""
    from registry import build_dataset
    name = conf.trainset if split == 'train' else conf.testset
    return build_dataset(name, transforms.ToTensor(), split, conf)


def worker_count(conf: Config, runtime: Runtime) -> int:
    """DataLoader workers per process: ``conf.num_thread``, or with -1 (auto) the cores this
    process may use, shared among the processes of its node, less one for the process itself
    (at most MAX_WORKERS)."""
    if conf.num_thread >= 0:
        return conf.num_thread
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    per_node = int(os.environ.get('LOCAL_WORLD_SIZE', '1')) if runtime.distributed else 1
    return max(1, min(MAX_WORKERS, cores // per_node - 1))


class TrainingSampler(Sampler):
    """Training keys for one epoch at a time: ``(index, augmentation seed)`` pairs, the indices
    shuffled by a generator seeded with (seed, epoch) (DistributedSampler's rule; under DDP each
    rank gets its own shard), the augmentation seed made of (seed, epoch). Call
    :meth:`set_epoch` before each epoch."""

    def __init__(self, dataset: Dataset, runtime: Runtime, seed: int):
        self.order = DistributedSampler(dataset, runtime.world_size, runtime.rank, shuffle=True, seed=seed)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.order.set_epoch(epoch)

    def __iter__(self):
        aug_seed = self.seed * 100003 + self.epoch
        return ((int(i), aug_seed) for i in self.order)

    def __len__(self) -> int:
        return len(self.order)


def build_loader(conf: Config, dataset: Dataset, runtime: Runtime) -> DataLoader:
    """A loader over ``dataset`` (from :func:`build_split`). Training split: full batches of
    :class:`TrainingSampler` keys (call ``loader.sampler.set_epoch(e)`` before each epoch),
    workers that persist across epochs. Test split: every item in order. Batches are per GPU
    count under DataParallel, per process under DDP; pinned memory on CUDA."""
    train = dataset.data_split == 'train'
    batch = conf.train_batch_size if train else conf.test_batch_size
    if not runtime.distributed and len(runtime.gpu_ids) > 1:
        batch *= len(runtime.gpu_ids)  # DataParallel splits each batch over the GPUs
    workers = worker_count(conf, runtime)
    sampler = TrainingSampler(dataset, runtime, conf.seed) if train else None
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                      pin_memory=runtime.device.type == 'cuda', drop_last=train,
                      persistent_workers=train and workers > 0)


def to_device(batch: dict, device: torch.device) -> dict:
    """The tensors of ``batch`` on ``device`` (asynchronous from pinned memory); other values as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
