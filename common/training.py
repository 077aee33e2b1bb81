"""Training: Adam with a step schedule over the configured training split; snapshots every
``ckpt_freq`` epochs and of the latest epoch; optional validation on the test split every
``val_every`` epochs; the log file, the PNG curves and TensorBoard event files under ``log/``."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from checkpoints import list_snapshots, load_checkpoint, save_checkpoint, snapshot_path
from config import Config
from errors import UserError
from loaders import build_loader, build_split, to_device
from logger import setup_logging
from runtime import Runtime, seed_everything, unwrap
from testing import Tester
from utils.curves import plot_training_curves

log = logging.getLogger('interacthand')

VAL_KEYS = ('mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'f5', 'f15', 'seg_iou_hand')  # logged as val_<key>


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite."""


def prepare_model(model: nn.Module, conf: Config) -> nn.Module:
    """``model`` (on its device) as ``conf`` asks it trained: channels-last memory format
    (``channels_last``) and ``torch.compile`` of its forward pass, in place (``compile``)."""
    if conf.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if conf.compile:
        model.compile()
    return model


def make_optimizer(model: nn.Module, conf: Config, device: torch.device, fused: bool = True) -> torch.optim.Adam:
    """Adam at ``conf.lr``, and at ``conf.lr * conf.localiser_lr_factor`` for the hand localiser's
    parameters (a second group, when the model has one); ``fused`` (one kernel for all
    parameters) where the device supports it."""
    localiser = getattr(model, 'localiser', None)
    own = list(localiser.parameters()) if localiser is not None else []
    ids = {id(p) for p in own}
    groups = [{'params': [p for p in model.parameters() if id(p) not in ids]}]
    if own:
        groups.append({'params': own, 'lr': conf.lr * conf.localiser_lr_factor})
    return torch.optim.Adam(groups, lr=conf.lr, fused=fused and device.type in ('cpu', 'cuda'))


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Trainer:
    """Trains a ``model.Model`` on ``conf.trainset`` with Adam and a step schedule; writes
    ``snapshot_{epochs completed}.pth.tar`` every ``ckpt_freq`` epochs, at the end, and for the latest
    epoch (replacing the previous latest one), so an interrupted run loses at most one epoch.
    ``history`` (one dict per completed epoch: ``epoch``, ``lr``, ``seconds`` (its wall time,
    validation included), the epoch mean of each loss term and, on validation epochs,
    ``val_<metric>``) travels in the snapshots and is drawn to ``log/train_curves.png`` after
    every epoch.

    Args:
        conf: the whole training configuration.
        runtime: where this process runs (``runtime.setup_runtime``).
        model: the network to train (default: a new one, ``get_model(conf, 'train')``); with
            ``resume`` it is replaced by the newest snapshot's weights.
        resume: go on from the newest snapshot in ``conf.model_dir`` (weights, optimizer,
            schedule, history).
    """

    def __init__(self, conf: Config, runtime: Runtime, model: nn.Module | None = None, resume: bool = False):
        from model import get_model
        self.conf, self.rt = conf, runtime
        if not resume and (old := list_snapshots(conf.model_dir)):
            raise UserError(f"{conf.model_dir} already holds snapshots of an earlier training (epochs "
                            f"{', '.join(map(str, old))}); add --continue to go on with it, or move them "
                            'away (or pick another --set output_dir=...) to start a new one')
        if runtime.main_process:
            conf.make_dirs()
        setup_logging(conf.log_dir / 'train_logs.txt' if runtime.main_process else None,
                      quiet=not runtime.main_process)
        seed_everything(conf.seed)
        self.dataset = build_split(conf, 'train')
        self.loader = build_loader(conf, self.dataset, runtime)
        self.val_dataset = build_split(conf, 'test') if conf.val_every and runtime.main_process else None
        if self.val_dataset is not None and not self.val_dataset.has_gt:
            log.warning(f'val_every={conf.val_every}: the {conf.testset} test split has no ground truth; '
                        'training goes on without validation')
            self.val_dataset = None
        model = prepare_model((model if model is not None else get_model(conf, 'train')).to(runtime.device), conf)
        self.model = self._wrap(model)
        self.optimizer = make_optimizer(model, conf, runtime.device)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(conf.lr_dec_epoch), gamma=conf.lr_dec_factor)
        self.history: list[dict[str, float]] = []
        self.start_epoch = self._resume() if resume else 0
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype() == torch.float16)
        self._board = None
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

    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``conf.amp`` (None: float32); on the CPU None, with a warning."""
        if self.conf.amp == 'none':
            return None
        if self.rt.device.type != 'cuda':
            log.warning(f'amp={self.conf.amp} needs CUDA; training in float32 on the CPU')
            self.conf.amp = 'none'
            return None
        return torch.bfloat16 if self.conf.amp == 'bf16' else torch.float16

    def _resume(self) -> int:
        from checkpoints import load_network
        snaps = list_snapshots(self.conf.model_dir)
        if not snaps:
            log.info(f'--continue: no snapshot in {self.conf.model_dir}; starting from epoch 0')
            return 0
        path = snaps[max(snaps)]
        ckpt = load_checkpoint(path, self.rt.device)
        load_network(self.model, ckpt, path)
        groups = len(ckpt['optimizer']['param_groups'])
        if groups != len(self.optimizer.param_groups):
            raise UserError(f'{path} was written by an older version of this code, whose optimizer has '
                            f'{groups} parameter group(s) instead of {len(self.optimizer.param_groups)} '
                            '(the hand localiser now has its own learning rate); its weights load in '
                            'test.py and the demo, but to train on, start a new training')
        self.optimizer.load_state_dict(ckpt['optimizer'])
        self.scheduler.load_state_dict(ckpt['scheduler'])
        self.history = list(ckpt.get('history', []))
        log.info(f'resumed from {path} (epoch {ckpt["epoch"]}, lr {self.optimizer.param_groups[0]["lr"]:.2e})')
        return int(ckpt['epoch'])

    @property
    def board(self):
        """TensorBoard writer on ``log/`` (main process only; None elsewhere)."""
        if self._board is None and self.rt.main_process:
            from torch.utils.tensorboard import SummaryWriter
            self._board = SummaryWriter(str(self.conf.log_dir))
        return self._board

    def save(self, epoch: int) -> Path:
        """Snapshot after ``epoch`` epochs; drops the previous latest one if it is not kept by ckpt_freq."""
        conf = self.conf
        path = snapshot_path(conf.model_dir, epoch)
        save_checkpoint({'epoch': epoch, 'network': unwrap(self.model).state_dict(),
                         'optimizer': self.optimizer.state_dict(), 'scheduler': self.scheduler.state_dict(),
                         'history': self.history, 'config': conf.to_dict(), 'preset': conf.preset,
                         'hand_model': unwrap(self.model).hand_model_id}, path)
        prev = epoch - 1
        if prev > 0 and prev % conf.ckpt_freq and prev in (snaps := list_snapshots(conf.model_dir)):
            snaps[prev].unlink()
        return path

    def train(self) -> Path | None:
        """Run from ``start_epoch`` to ``conf.end_epoch``; returns the last snapshot written."""
        conf, last = self.conf, None
        if self.start_epoch >= conf.end_epoch:
            log.info(f'nothing to do: {self.start_epoch} epochs done, end_epoch is {conf.end_epoch}')
            return None
        t_start = time.time()
        curves = conf.log_dir / 'train_curves.png'
        try:
            for epoch in range(self.start_epoch, conf.end_epoch):
                lr, t_epoch = self.optimizer.param_groups[0]['lr'], time.time()
                means = self.train_epoch(epoch, t_start)
                entry = {'epoch': epoch + 1, 'lr': lr, **means}
                if self.val_dataset is not None and ((epoch + 1) % conf.val_every == 0
                                                     or epoch + 1 == conf.end_epoch):
                    entry.update(self.validate(epoch + 1))
                entry['seconds'] = time.time() - t_epoch
                self.history.append(entry)
                self.scheduler.step()
                if self.rt.main_process:
                    self._log_epoch(entry)
                    last = self.save(epoch + 1)
                    kept = (epoch + 1) % conf.ckpt_freq == 0 or epoch + 1 == conf.end_epoch
                    log.info(f'saved {last}' + ('' if kept else ' (replaced after the next epoch)'))
                    plot_training_curves(self.history, curves)
        except KeyboardInterrupt:
            if self.rt.main_process:
                log.warning(self._interrupted_note())
            raise
        finally:
            if self._board is not None:
                self._board.close()
                self._board = None
        if self.rt.main_process:
            log.info(f'training curves: {curves}; TensorBoard: tensorboard --logdir {conf.log_dir}')
        log.info(f'training done in {format_duration(time.time() - t_start)}')
        return last

    def validate(self, epoch: int) -> dict[str, float]:
        """The metrics of the model as it is now on the test split, as ``val_<key>`` entries
        (:data:`VAL_KEYS`, mm and 0..1), logged."""
        t0 = time.time()
        summary = Tester(self.conf, self.rt, unwrap(self.model), self.val_dataset).run(progress=False).summary()
        values = {f'val_{k}': float(summary[k]) for k in VAL_KEYS if summary.get(k) is not None}
        log.info(f'validation after epoch {epoch} on {self.conf.testset} ({len(self.val_dataset)} samples, '
                 f'{time.time() - t0:.0f} s): ' + ', '.join(f'{k[4:]} {v:.4g}' for k, v in values.items()))
        return values

    def _log_epoch(self, entry: dict[str, float]) -> None:
        """An epoch's loss means, learning rate, wall time and validation metrics to TensorBoard."""
        step = entry['epoch']
        for key, value in entry.items():
            if key == 'epoch':
                continue
            group = {'lr': 'lr', 'seconds': 'time'}.get(key, 'val' if key.startswith('val_') else 'epoch_loss')
            self.board.add_scalar(f'{group}/{key.removeprefix("val_")}', value, step)
        self.board.flush()

    def _interrupted_note(self) -> str:
        """What an interrupted training leaves behind and how to go on from it."""
        snaps = list_snapshots(self.conf.model_dir)
        if not snaps:
            return 'training interrupted before its first epoch was finished, so there is no snapshot yet'
        done = max(snaps)
        return (f'training interrupted; {snaps[done]} ({done} epochs) is kept: run train.py again with '
                '--continue and the same arguments to go on from it')

    def train_epoch(self, epoch: int, t_start: float) -> dict[str, float]:
        """One epoch over the training set; returns the epoch mean of each weighted loss term and
        of their sum (``total``), as this process saw them. Losses stay on the device between log
        points (no host synchronisation per step); non-finite ones are found at the next log point."""
        conf, rt = self.conf, self.rt
        seed_everything(conf.seed * 100003 + epoch)  # the same epoch gets the same randomness, resumed or not
        loader = self.loader
        loader.sampler.set_epoch(epoch)
        self.model.train()
        amp = self.amp_dtype()
        n_iter = len(loader)
        if n_iter == 0:
            raise UserError(f'the {conf.trainset} training set has fewer samples than one batch '
                            f'({conf.train_batch_size}); lower --set train_batch_size')
        bar = tqdm(loader, desc=f'epoch {epoch + 1}/{conf.end_epoch}', disable=not rt.main_process,
                   dynamic_ncols=True, leave=False)
        sums: dict[str, torch.Tensor] = {}
        pending: list[dict[str, torch.Tensor]] = []   # losses since the last log point
        t0, seen = time.time(), 0
        log_every = max(1, n_iter // 5)
        for it, (inputs, targets, meta) in enumerate(bar):
            inputs, targets, meta = (to_device(d, rt.device) for d in (inputs, targets, meta))
            step = self.step(inputs, targets, meta, amp)
            seen += inputs['img'].shape[0] * rt.world_size
            pending.append(step)
            for k, v in step.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            if (it + 1) % log_every and it + 1 != n_iter:
                continue
            self._check_finite(pending, epoch, it + 1 - len(pending))
            pending = []
            speed = seen / max(time.time() - t0, 1e-9)
            bar.set_postfix(loss=f'{step["total"].item():.3f}', sps=f'{speed:.1f}')
            if rt.main_process:
                done = (epoch - self.start_epoch) * n_iter + it + 1
                remaining = (conf.end_epoch - self.start_epoch) * n_iter - done
                eta = (time.time() - t_start) / done * remaining
                means = ' '.join(f'{k} {v.item() / (it + 1):.4f}' for k, v in sums.items())
                lr = self.optimizer.param_groups[0]['lr']
                log.info(f'epoch {epoch + 1}/{conf.end_epoch} iter {it + 1}/{n_iter} | lr {lr:.2e} | '
                         f'{means} | {speed:.1f} samples/s | ETA {format_duration(eta)}')
                global_step = epoch * n_iter + it + 1
                for k, v in step.items():
                    self.board.add_scalar(f'loss/{k}', v.item(), global_step)
                self.board.add_scalar('samples_per_second', speed, global_step)
        bar.close()
        return {k: v.item() / n_iter for k, v in sums.items()}

    def step(self, inputs: dict, targets: dict, meta: dict, amp: torch.dtype | None) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch already on the device (autocast to ``amp`` when given);
        returns the weighted loss terms and their sum ``total``, detached, still on the device."""
        with torch.autocast(self.rt.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            losses = self.model(inputs, targets, meta, 'train')
        losses = {k: v.mean() for k, v in losses.items()}  # DataParallel returns one value per GPU
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: v.detach() for k, v in {**losses, 'total': total}.items()}

    def _check_finite(self, pending: list[dict[str, torch.Tensor]], epoch: int, first_it: int) -> None:
        """Raise :class:`NonFiniteLoss` naming the first iteration (0-based ``first_it`` is that of
        ``pending[0]``) whose loss is not finite, and its terms."""
        totals = torch.stack([p['total'] for p in pending])
        bad = (~torch.isfinite(totals)).nonzero()
        if not len(bad):
            return
        i = int(bad[0])
        terms = ', '.join(f'{k}={v.item():.4g}' for k, v in pending[i].items() if k != 'total')
        snaps = list_snapshots(self.conf.model_dir)
        keep = f'the last good snapshot is {snaps[max(snaps)]}' if snaps else 'no snapshot was written yet'
        raise NonFiniteLoss(f'the loss is not finite at epoch {epoch + 1}, iteration {first_it + i + 1} '
                            f'({terms}); {keep}; lower the learning rate (--set lr=...) or check the data')
