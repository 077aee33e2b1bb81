"""Trainer and Tester: data, model, optimizer, schedule, checkpoints, devices (one GPU, DataParallel
or DistributedDataParallel under torchrun, or the CPU)."""
from __future__ import annotations

import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import transforms
from tqdm import tqdm

from config import MODEL_FIELDS, Config, select_device
from errors import UserError
from logger import setup_logging
from utils.curves import plot_training_curves
from utils.files import write_atomically
from utils.metrics import HandMetrics, IoUCounts, seg_iou

log = logging.getLogger('interacthand')

SNAPSHOT_RE = re.compile(r'^snapshot_(\d+)\.pth\.tar$')


# ----------------------------------------------------------------------------------------------
# Devices and processes

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
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else model


# ----------------------------------------------------------------------------------------------
# Checkpoints

def snapshot_path(model_dir: Path, epoch: int) -> Path:
    return Path(model_dir) / f'snapshot_{epoch}.pth.tar'


def list_snapshots(model_dir: Path) -> dict[int, Path]:
    """{epochs completed: path} of the snapshots in ``model_dir``."""
    d = Path(model_dir)
    if not d.is_dir():
        return {}
    found = {int(m.group(1)): p for p in d.iterdir() if (m := SNAPSHOT_RE.match(p.name))}
    return dict(sorted(found.items()))


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: an interrupted save never
    leaves a broken snapshot behind."""
    write_atomically(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = 'cpu') -> dict:
    """Read a snapshot; a missing or unreadable file is a :class:`UserError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f'checkpoint {path} is a folder; pass one snapshot_N.pth.tar file in it')
    if not path.is_file():
        raise UserError(f'checkpoint {path} does not exist; pass the path of a snapshot_N.pth.tar '
                        'file (training writes them to output/model_dump/)')
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated or foreign file
        with open(path, 'rb') as fh:
            zipped = fh.read(2) == b'PK'   # torch.save writes a zip archive
        if zipped:
            raise UserError(f'checkpoint {path} is damaged or incomplete (cut short while copying or '
                            'saving?); copy it again, or use another snapshot') from None
        raise UserError(f'cannot read checkpoint {path} ({type(err).__name__}); it is not an '
                        'InteractHand snapshot') from None
    if not isinstance(ckpt, dict) or 'network' not in ckpt:
        raise UserError(f'{path} is not an InteractHand snapshot (no network weights in it)')
    return ckpt


def find_snapshot(model_dir: Path, epoch: int | None) -> Path:
    """The snapshot after ``epoch`` epochs (the newest when None); a missing one is a
    :class:`UserError` listing the epochs that do exist."""
    snaps = list_snapshots(model_dir)
    if epoch is None and snaps:
        return snaps[max(snaps)]
    if epoch in snaps:
        return snaps[epoch]
    have = ', '.join(map(str, snaps)) if snaps else 'none'
    what = f'snapshot_{epoch}.pth.tar not found' if epoch is not None else 'no snapshot found'
    raise UserError(f'{what} in {model_dir} (epochs with snapshots: {have}); train first '
                    '(python main/train.py, or make quickstart) or pick one of those epochs')


def model_config_from(ckpt: dict) -> dict:
    """The architecture fields of the config a snapshot was trained with."""
    stored = ckpt.get('config', {})
    return {k: stored[k] for k in MODEL_FIELDS if k in stored}


def _architecture_hint(ckpt: dict) -> str:
    """Why a snapshot does not fit the model built from ``cfg``, and what to do (end of a sentence)."""
    from config import cfg
    now = cfg.to_dict()   # tuples as lists, as stored in snapshots
    differ = {k: v for k, v in model_config_from(ckpt).items() if now.get(k) != v}
    if not differ:
        return ('it was made by another version of the network code; use that version, or train '
                'again with this one')

    def listed(values: dict) -> str:
        return ', '.join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in values.items())
    return (f'it was trained with {listed(differ)} and this run asks for '
            f'{listed({k: now[k] for k in differ})}: use the values it was trained with (test.py and '
            'the demo take them from the snapshot unless --preset or --set change them)')


def load_network(model: nn.Module, ckpt: dict, path: Path) -> None:
    """Load the weights of a snapshot (saved with or without DataParallel/DDP) into ``model``."""
    state = {re.sub(r'^module\.', '', k): v for k, v in ckpt['network'].items()}
    target = unwrap(model)
    own = target.state_dict()
    resized = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if resized:
        k = resized[0]
        raise UserError(f'{path} does not fit this model ({len(resized)} weights of other sizes, e.g. '
                        f'{k}: {tuple(state[k].shape)} in the snapshot, {tuple(own[k].shape)} here); '
                        f'{_architecture_hint(ckpt)}')
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f'{path} does not fit this model ({len(missing)} missing and '
                        f'{len(unexpected)} unexpected weights, e.g. {(missing + unexpected)[0]}); '
                        f'{_architecture_hint(ckpt)}')
    stored = ckpt.get('hand_model')
    current = getattr(target, 'hand_model_id', None)
    if stored and current and stored != current:
        log.warning(f'{path} was trained with hand model {stored} but {current} is in use now; '
                    'results will not match the training')


# ----------------------------------------------------------------------------------------------
# Data

def seed_worker(worker_id: int) -> None:
    """DataLoader seeds torch and numpy per worker from the loader's generator; so does this for
    Python's random module, keeping augmentation reproducible for a given epoch seed."""
    random.seed(torch.initial_seed() % 2**32)


def build_split(cfg: Config, split: str) -> torch.utils.data.Dataset:
    """The ``'train'`` (``cfg.trainset``) or ``'test'`` (``cfg.testset``) dataset; built before the
    model, so a missing dataset is reported before any weights are fetched."""
    from registry import build_dataset
    return build_dataset(cfg.trainset if split == 'train' else cfg.testset, transforms.ToTensor(), split)


def build_loader(cfg: Config, dataset: torch.utils.data.Dataset, runtime: Runtime,
                 epoch_seed: int | None = None) -> DataLoader:
    """A loader over ``dataset`` (from :func:`build_split`): shuffled, with full batches only, for
    the training split; per-process shards under DDP; a batch per GPU count under DataParallel."""
    train = dataset.data_split == 'train'
    batch = cfg.train_batch_size if train else cfg.test_batch_size
    if not runtime.distributed and len(runtime.gpu_ids) > 1:
        batch *= len(runtime.gpu_ids)  # DataParallel splits each batch over the GPUs
    sampler = DistributedSampler(dataset, runtime.world_size, runtime.rank, shuffle=train,
                                 seed=epoch_seed or 0) if runtime.distributed else None
    gen = torch.Generator().manual_seed(epoch_seed) if epoch_seed is not None else None
    return DataLoader(dataset, batch_size=batch, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=cfg.num_thread, pin_memory=runtime.device.type == 'cuda',
                      drop_last=train, generator=gen, worker_init_fn=seed_worker,
                      persistent_workers=False)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


# ----------------------------------------------------------------------------------------------
# Training

class NonFiniteLoss(UserError):
    """The loss became NaN or infinite."""


class Trainer:
    """Trains ``get_model('train')`` on ``cfg.trainset`` with Adam and a step schedule; writes
    ``snapshot_{epochs completed}.pth.tar`` every ``ckpt_freq`` epochs, at the end, and for the latest
    epoch (replacing the previous latest one), so an interrupted run loses at most one epoch.
    ``history`` (one dict per completed epoch: ``epoch``, ``lr`` and the epoch mean of each loss
    term) travels in the snapshots and is drawn to ``log/train_curves.png`` after every epoch."""

    def __init__(self, cfg: Config, runtime: Runtime, resume: bool = False):
        from model import get_model
        self.cfg, self.rt = cfg, runtime
        if not resume and (old := list_snapshots(cfg.model_dir)):
            raise UserError(f"{cfg.model_dir} already holds snapshots of an earlier training (epochs "
                            f"{', '.join(map(str, old))}); add --continue to go on with it, or move them "
                            'away (or pick another --set output_dir=...) to start a new one')
        if runtime.main_process:
            cfg.make_dirs()
        setup_logging(cfg.log_dir / 'train_logs.txt' if runtime.main_process else None,
                      quiet=not runtime.main_process)
        seed_everything(cfg.seed)
        self.dataset = build_split(cfg, 'train')
        model = get_model('train').to(runtime.device)
        self.model = self._wrap(model)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.lr_dec_epoch), gamma=cfg.lr_dec_factor)
        self.history: list[dict[str, float]] = []
        self.start_epoch = self._resume() if resume else 0
        self.scaler = torch.amp.GradScaler('cuda', enabled=self._amp_dtype() == torch.float16)
        n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info(f'model: {n_params / 1e6:.2f} M trainable parameters, hand model {model.hand_model_id}, '
                 f'device {runtime.device}' + (f' x{len(runtime.gpu_ids)} (DataParallel)'
                                               if runtime.gpu_ids and not runtime.distributed else '')
                 + (f', {runtime.world_size} processes (DDP)' if runtime.distributed else ''))

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.rt.distributed:
            ids = [self.rt.device.index] if self.rt.device.type == 'cuda' else None
            return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
        if self.rt.gpu_ids:  # as the reference: DataParallel whenever GPUs are used, one or several
            return nn.DataParallel(model, device_ids=self.rt.gpu_ids)
        return model

    def _amp_dtype(self) -> torch.dtype | None:
        if self.cfg.amp == 'none':
            return None
        if self.rt.device.type != 'cuda':
            log.warning(f'amp={self.cfg.amp} needs CUDA; training in float32 on the CPU')
            self.cfg.amp = 'none'
            return None
        return torch.bfloat16 if self.cfg.amp == 'bf16' else torch.float16

    def _resume(self) -> int:
        snaps = list_snapshots(self.cfg.model_dir)
        if not snaps:
            log.info(f'--continue: no snapshot in {self.cfg.model_dir}; starting from epoch 0')
            return 0
        path = snaps[max(snaps)]
        ckpt = load_checkpoint(path, self.rt.device)
        load_network(self.model, ckpt, path)
        self.optimizer.load_state_dict(ckpt['optimizer'])
        self.scheduler.load_state_dict(ckpt['scheduler'])
        self.history = list(ckpt.get('history', []))
        log.info(f'resumed from {path} (epoch {ckpt["epoch"]}, lr {self.optimizer.param_groups[0]["lr"]:.2e})')
        return int(ckpt['epoch'])

    def save(self, epoch: int) -> Path:
        """Snapshot after ``epoch`` epochs; drops the previous latest one if it is not kept by ckpt_freq."""
        path = snapshot_path(self.cfg.model_dir, epoch)
        save_checkpoint({'epoch': epoch, 'network': unwrap(self.model).state_dict(),
                         'optimizer': self.optimizer.state_dict(), 'scheduler': self.scheduler.state_dict(),
                         'history': self.history, 'config': self.cfg.to_dict(),
                         'preset': self.cfg.preset,
                         'hand_model': unwrap(self.model).hand_model_id}, path)
        prev = epoch - 1
        if prev > 0 and prev % self.cfg.ckpt_freq and prev in (snaps := list_snapshots(self.cfg.model_dir)):
            snaps[prev].unlink()
        return path

    def train(self) -> Path | None:
        """Run from ``start_epoch`` to ``cfg.end_epoch``; returns the last snapshot written."""
        cfg, last = self.cfg, None
        if self.start_epoch >= cfg.end_epoch:
            log.info(f'nothing to do: {self.start_epoch} epochs done, end_epoch is {cfg.end_epoch}')
            return None
        t_start = time.time()
        curves = cfg.log_dir / 'train_curves.png'
        try:
            for epoch in range(self.start_epoch, cfg.end_epoch):
                lr = self.optimizer.param_groups[0]['lr']
                means = self.train_epoch(epoch, t_start)
                self.history.append({'epoch': epoch + 1, 'lr': lr, **means})
                self.scheduler.step()
                if self.rt.main_process:
                    last = self.save(epoch + 1)
                    kept = (epoch + 1) % cfg.ckpt_freq == 0 or epoch + 1 == cfg.end_epoch
                    log.info(f'saved {last}' + ('' if kept else ' (replaced after the next epoch)'))
                    plot_training_curves(self.history, curves)
        except KeyboardInterrupt:
            if self.rt.main_process:
                log.warning(self._interrupted_note())
            raise
        if self.rt.main_process:
            log.info(f'training curves: {curves}')
        log.info(f'training done in {format_duration(time.time() - t_start)}')
        return last

    def _interrupted_note(self) -> str:
        """What an interrupted training leaves behind and how to go on from it."""
        snaps = list_snapshots(self.cfg.model_dir)
        if not snaps:
            return 'training interrupted before its first epoch was finished, so there is no snapshot yet'
        done = max(snaps)
        return (f'training interrupted; {snaps[done]} ({done} epochs) is kept: run train.py again with '
                '--continue and the same arguments to go on from it')

    def train_epoch(self, epoch: int, t_start: float) -> dict[str, float]:
        """One epoch over the training set; returns the epoch mean of each weighted loss term and
        of their sum (``total``), as this process saw them."""
        cfg, rt = self.cfg, self.rt
        epoch_seed = cfg.seed * 100003 + epoch
        seed_everything(epoch_seed)  # the same epoch gets the same randomness, resumed or not
        loader = build_loader(cfg, self.dataset, rt, epoch_seed)
        if rt.distributed:
            loader.sampler.set_epoch(epoch)
        self.model.train()
        amp = self._amp_dtype()
        n_iter = len(loader)
        if n_iter == 0:
            raise UserError(f'the {cfg.trainset} training set has fewer samples than one batch '
                            f'({cfg.train_batch_size}); lower --set train_batch_size')
        bar = tqdm(loader, desc=f'epoch {epoch + 1}/{cfg.end_epoch}', disable=not rt.main_process,
                   dynamic_ncols=True, leave=False)
        sums: dict[str, float] = {}
        t0, seen = time.time(), 0
        log_every = max(1, n_iter // 5)
        for it, (inputs, targets, meta) in enumerate(bar):
            inputs, targets, meta = (to_device(d, rt.device) for d in (inputs, targets, meta))
            with torch.autocast(rt.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                losses = self.model(inputs, targets, meta, 'train')
            losses = {k: v.mean() for k, v in losses.items()}  # DataParallel returns one value per GPU
            total = sum(losses.values())
            if not torch.isfinite(total):
                terms = ', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())
                snaps = list_snapshots(cfg.model_dir)
                keep = f'the last good snapshot is {snaps[max(snaps)]}' if snaps else 'no snapshot was written yet'
                raise NonFiniteLoss(f'the loss is not finite at epoch {epoch + 1}, iteration {it + 1} '
                                    f'({terms}); {keep}; lower the learning rate (--set lr=...) or check the data')
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

            seen += inputs['img'].shape[0] * rt.world_size
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            sums['total'] = sums.get('total', 0.0) + total.item()
            speed = seen / max(time.time() - t0, 1e-9)
            bar.set_postfix(loss=f'{total.item():.3f}', sps=f'{speed:.1f}')
            if rt.main_process and ((it + 1) % log_every == 0 or it + 1 == n_iter):
                done = epoch * n_iter + it + 1
                total_iters = (cfg.end_epoch - self.start_epoch) * n_iter
                elapsed = time.time() - t_start
                eta = elapsed / max(done - self.start_epoch * n_iter, 1) * (total_iters - (done - self.start_epoch * n_iter))
                means = ' '.join(f'{k} {v / (it + 1):.4f}' for k, v in sums.items())
                log.info(f'epoch {epoch + 1}/{cfg.end_epoch} iter {it + 1}/{n_iter} | lr '
                         f'{self.optimizer.param_groups[0]["lr"]:.2e} | {means} | {speed:.1f} samples/s '
                         f'| ETA {format_duration(eta)}')
        bar.close()
        return {k: v / n_iter for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------
# Testing

@dataclass
class TestResult:
    """What a pass over a test set gives: predictions (root-relative, metres, mirrored back to the
    original side), absolute wrist positions, and, when the set has ground truth, the metrics."""
    joints: np.ndarray                 # (N, 21, 3)
    verts: np.ndarray                  # (N, 778, 3)
    root_joint_cam: np.ndarray         # (N, 3)
    metrics: HandMetrics | None = None
    occlusion: np.ndarray | None = None  # (N,) where the dataset records it (SYNTH), else None
    seg_counts: IoUCounts | None = None  # hand-class IoU counts, when the model segments
    # The first NUM_EXAMPLES samples as the network saw them, for a picture: 'img' (K, S, S, 3)
    # uint8 RGB crops, 'joints_img' (K, 21, 2) predicted, in 0..1 of the crop, and where available
    # 'seg' (K, S/4, S/4) predicted labels and 'joints_img_gt' (K, 21, 2).
    examples: dict[str, np.ndarray] | None = None


class Tester:
    """Runs ``get_model('test')`` over ``cfg.testset``; scores it when the set has ground truth."""

    NUM_EXAMPLES = 8

    def __init__(self, cfg: Config, runtime: Runtime, ckpt: dict, ckpt_path: Path):
        from model import get_model
        self.cfg, self.rt = cfg, runtime
        self.dataset = build_split(cfg, 'test')
        model = get_model('test').to(runtime.device)
        load_network(model, ckpt, ckpt_path)
        self.model = nn.DataParallel(model, device_ids=runtime.gpu_ids) if runtime.gpu_ids else model
        self.model.eval()
        self.hand_model_id = model.hand_model_id

    @torch.no_grad()
    def run(self) -> TestResult:
        loader = build_loader(self.cfg, self.dataset, self.rt)
        has_gt = loader.dataset.has_gt
        metrics = HandMetrics() if has_gt else None
        seg_counts = None
        joints, verts, roots, occlusion = [], [], [], []
        examples: dict[str, list[np.ndarray]] = {}
        for inputs, targets, meta in tqdm(loader, desc=f'test {self.cfg.testset}', dynamic_ncols=True):
            out = self.model(to_device(inputs, self.rt.device), {}, {}, 'test')
            if sum(len(a) for a in examples.get('img', [])) < self.NUM_EXAMPLES:
                self._keep_examples(examples, inputs, targets if has_gt else None, out)
            x_sign = (1.0 - 2.0 * meta['flip'].float())[:, None]  # (B, 1): -1 mirrors a flipped sample back
            j, v = out['joints_coord_cam'].float().cpu(), out['mesh_coord_cam'].float().cpu()
            j[..., 0] *= x_sign
            v[..., 0] *= x_sign
            j, v = j.numpy(), v.numpy()
            joints.append(j)
            verts.append(v)
            roots.append(meta['root_joint_cam'].numpy())
            occlusion.append(meta['occlusion'].numpy())
            if has_gt:
                metrics.update(j, targets['joints_coord_cam'].numpy(), v, targets['mesh_coord_cam'].numpy())
                if 'seg' in out:
                    counts = seg_iou(out['seg'].argmax(1).cpu().numpy(), targets['seg'].numpy())
                    seg_counts = counts if seg_counts is None else seg_counts + counts
        occ = np.concatenate(occlusion)
        kept = {k: np.concatenate(v)[:self.NUM_EXAMPLES] for k, v in examples.items()}
        return TestResult(np.concatenate(joints), np.concatenate(verts), np.concatenate(roots),
                          metrics, occ if (occ >= 0).all() else None, seg_counts, kept or None)

    @staticmethod
    def _keep_examples(examples: dict[str, list[np.ndarray]], inputs: dict, targets: dict | None,
                       out: dict[str, torch.Tensor]) -> None:
        """Append a batch's crops and predictions (and ground-truth 2D joints) to ``examples``."""
        img = (inputs['img'].permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8)
        batch = {'img': img, 'joints_img': out['joints_coord_img'].float()}
        if 'seg' in out:
            batch['seg'] = out['seg'].argmax(1)
        if targets is not None:
            batch['joints_img_gt'] = targets['joints_img']
        for key, value in batch.items():
            examples.setdefault(key, []).append(value.cpu().numpy())
