"""Training losses: MSE on the mesh, joints, rotations, shape and 2D joints (as in the reference
HandOccNet, whose weights are tuned for MSE in metres), and segmentation (cross-entropy + Dice).

Weights come from the config (``lambda_*``). Reference values: vertices 1e4, joints 1e4, pose 10,
shape 0.1, 2D joints 100. Each of those makes its term about 1 at a typical early error (1 cm per
coordinate: 1e4 * 1e-4; a tenth of the crop: 100 * 0.01). ``lambda_seg`` defaults to 1: the
segmentation loss starts at about 1.8 (cross-entropy ln 3 ~ 1.1 for an unsure 3-class guess, Dice
up to 1), so weight 1 puts it on the same footing as the other terms instead of letting it dominate
the shared backbone's gradients early on.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from utils.preprocessing import HAND, IGNORE_LABEL

if TYPE_CHECKING:
    from config import Config

LOSS_KEYS = ('mano_verts', 'mano_joints', 'mano_pose', 'mano_shape', 'joints_img', 'seg')


def loss_weights(conf: Config) -> dict[str, float]:
    """The ``lambda_*`` of a config, by loss name (see :data:`LOSS_KEYS`)."""
    return {key: float(getattr(conf, f'lambda_{key}')) for key in LOSS_KEYS}


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels plus Dice loss of the hand class.

    logits (B, 3, h, w), labels (B, h, w) int64 with 255 = unknown -> scalar. Cross-entropy is the
    mean over all labelled pixels of the batch; Dice is computed per sample over its labelled
    pixels and averaged over samples that have any. Unlabelled samples add nothing, and a batch
    without labels gives exactly 0 (with a zero gradient, never NaN).
    """
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"targets['seg'] must have shape {(logits.shape[0], *logits.shape[2:])} "
                         f'(B, H/4, W/4), got {tuple(labels.shape)}')
    logits = logits.float()
    valid = labels != IGNORE_LABEL
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL, reduction='sum')
    ce = ce / valid.sum().clamp(min=1)
    mask = valid.float()
    p_hand = logits.softmax(dim=1)[:, HAND] * mask
    g_hand = (labels == HAND).float() * mask
    overlap = (p_hand * g_hand).sum(dim=(1, 2))
    total = p_hand.sum(dim=(1, 2)) + g_hand.sum(dim=(1, 2))
    dice = 1 - (2 * overlap + 1) / (total + 1)                      # (B,); +1 smooths empty masks
    labelled = valid.flatten(1).any(dim=1).float()
    return ce + (dice * labelled).sum() / labelled.sum().clamp(min=1)


def compute_losses(pred: dict[str, torch.Tensor], gt: dict[str, torch.Tensor],
                   weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Weighted scalar losses, by name.

    pred: ``verts`` (B, 778, 3), ``joints`` (B, 21, 3) root-relative metres, ``rotmat``
    (B, 16, 3, 3), ``shape`` (B, 10), ``joints_img`` (B, 21, 2), and ``seg`` logits
    (B, 3, h, w) when segmentation is on. gt: the same keys (``seg`` as labels (B, h, w)).
    """
    out = {
        'mano_verts': F.mse_loss(pred['verts'].float(), gt['verts'].float()),
        'mano_joints': F.mse_loss(pred['joints'].float(), gt['joints'].float()),
        'mano_pose': F.mse_loss(pred['rotmat'].float(), gt['rotmat'].float()),
        'mano_shape': F.mse_loss(pred['shape'].float(), gt['shape'].float()),
        'joints_img': F.mse_loss(pred['joints_img'].float(), gt['joints_img'].float()),
    }
    if 'seg' in pred:
        out['seg'] = segmentation_loss(pred['seg'], gt['seg'])
    return {key: weights[key] * value for key, value in out.items()}
