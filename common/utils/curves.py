"""Training curves: the per-epoch mean of each loss term, the validation PA-MPJPE (where the run
validates, ``val_every``) and the learning rate, drawn to a PNG.

``train.py`` redraws ``output/log/train_curves.png`` after every epoch from the history it keeps in
its snapshots, so a resumed run's picture continues the interrupted one's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from utils.files import write_atomically


def plot_training_curves(history: list[dict[str, float]], path: Path) -> None:
    """Draw ``history`` to the PNG ``path``.

    history: one dict per completed epoch, in order: ``epoch`` (1-based), ``lr`` (the learning rate
    the epoch trained with), optionally ``seconds`` (not drawn), the epoch mean of each loss term
    (``total`` drawn in black) and, on validation epochs, ``val_<metric>``. Losses and learning rate are on log scales, the losses
    on top; when any epoch has ``val_pa_mpjpe``, a middle panel shows it in mm. Written
    atomically (utils.files), so an interrupted run never leaves a half-written picture.
    """
    if not history:
        raise ValueError('plot_training_curves needs at least one epoch of history')
    epochs = np.array([h['epoch'] for h in history])
    terms = [k for k in history[-1] if k not in ('epoch', 'lr', 'seconds', 'total') and not k.startswith('val_')]
    validated = [h for h in history if 'val_pa_mpjpe' in h]
    fig = Figure(figsize=(7.5, 8 if validated else 6), dpi=100, layout='constrained')
    if validated:
        losses, val, lr = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1))
        val_epochs = [h['epoch'] for h in validated]
        val.plot(val_epochs, [h['val_pa_mpjpe'] for h in validated], marker='o', ms=4, color='tab:red')
        val.set_ylabel('validation PA-MPJPE (mm)')
        val.grid(True, alpha=0.3)
    else:
        losses, lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    marker = 'o' if len(history) <= 30 else None
    for name in terms:
        losses.plot(epochs, [h.get(name, np.nan) for h in history], marker=marker, ms=3, label=name)
    losses.plot(epochs, [h['total'] for h in history], marker=marker, ms=4, color='black', lw=2,
                label='total')
    losses.set_yscale('log')
    losses.set_ylabel('epoch mean of the weighted loss')
    losses.set_title(f'training curves, {len(history)} epochs')
    losses.grid(True, which='both', alpha=0.3)
    losses.legend(fontsize=8, ncol=2)
    lr.plot(epochs, [h['lr'] for h in history], marker=marker, ms=3, color='tab:gray',
            drawstyle='steps-mid')
    lr.set_yscale('log')
    lr.set_ylabel('learning rate')
    lr.set_xlabel('epoch')
    lr.grid(True, which='both', alpha=0.3)
    write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format='png'))
