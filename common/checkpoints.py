"""Snapshots: their names, writing them safely, reading them with clear errors, and loading their
weights into a network.

A snapshot ``snapshot_{epochs completed}.pth.tar`` is a dict: ``epoch``, ``network`` (the bare
model's state dict), ``optimizer``, ``scheduler``, ``history`` (one dict per epoch: ``epoch``,
``lr``, loss means and validation metrics), ``config`` (``Config.to_dict()`` of the training),
``preset`` and ``hand_model`` (the hand model id, ``utils.mano.HandModel.model_id``).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from config import LEGACY_MODEL_FIELDS, MODEL_FIELDS
from errors import UserError
from runtime import unwrap
from utils.files import write_atomically

log = logging.getLogger('interacthand')

SNAPSHOT_RE = re.compile(r'^snapshot_(\d+)\.pth\.tar$')


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


def newest_snapshot(*model_dirs: Path) -> Path:
    """The newest snapshot of the first of ``model_dirs`` that holds any; none is a UserError."""
    for folder in model_dirs:
        if snaps := list_snapshots(folder):
            return snaps[max(snaps)]
    raise UserError(f"no checkpoint found: looked for snapshot_N.pth.tar in {', '.join(map(str, model_dirs))}; "
                    'train a model (`make quickstart` makes a small one) or pass --checkpoint PATH')


def model_config_from(ckpt: dict) -> dict:
    """The architecture fields of the config a snapshot was trained with (a field newer than the
    snapshot: the value it was trained with, config.LEGACY_MODEL_FIELDS)."""
    stored = {**LEGACY_MODEL_FIELDS, **ckpt.get('config', {})}
    return {k: stored[k] for k in MODEL_FIELDS if k in stored}


def _architecture_hint(ckpt: dict, built: dict) -> str:
    """Why a snapshot does not fit a model built with the architecture ``built`` (as a snapshot's
    config stores it), and what to do (the end of a sentence)."""
    differ = {k: v for k, v in model_config_from(ckpt).items() if built.get(k) != v}
    if not differ:
        return ('it was made by another version of the network code; use that version, or train '
                'again with this one')

    def listed(values: dict) -> str:
        return ', '.join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in values.items())
    return (f'it was trained with {listed(differ)} and this run asks for '
            f'{listed({k: built.get(k) for k in differ})}: use the values it was trained with '
            '(test.py and the demo take them from the snapshot unless --preset or --set change them)')


def load_network(model: nn.Module, ckpt: dict, path: Path) -> None:
    """Load the weights of a snapshot (saved with or without DataParallel/DDP) into ``model``
    (a ``model.Model``, bare or wrapped); a snapshot that does not fit names the architecture
    settings that differ."""
    state = {re.sub(r'^module\.', '', k): v for k, v in ckpt['network'].items()}
    target = unwrap(model)
    own = target.state_dict()
    built = getattr(target, 'architecture', {})
    resized = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if resized:
        k = resized[0]
        raise UserError(f'{path} does not fit this model ({len(resized)} weights of other sizes, e.g. '
                        f'{k}: {tuple(state[k].shape)} in the snapshot, {tuple(own[k].shape)} here); '
                        f'{_architecture_hint(ckpt, built)}')
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f'{path} does not fit this model ({len(missing)} missing and '
                        f'{len(unexpected)} unexpected weights, e.g. {(missing + unexpected)[0]}); '
                        f'{_architecture_hint(ckpt, built)}')
    stored = ckpt.get('hand_model')
    current = getattr(target, 'hand_model_id', None)
    if stored and current and stored != current:
        log.warning(f'{path} was trained with hand model {stored} but {current} is in use now; '
                    'results will not match the training')
