"""Training losses: MSE on the mesh, joints, rotations, shape and 2D joints (as in the reference
HandOccNet, whose weights are tuned for MSE in metres), and segmentation (cross-entropy + Dice).

Weights come from the config (``lambda_*``). Reference values: vertices 1e4, joints 1e4, pose 10,
shape 0.1, 2D joints 100. Each of those makes its term about 1 at a typical early error (1 cm per
coordinate: 1e4 * 1e-4; a tenth of the crop: 100 * 0.01). ``lambda_seg`` defaults to 1: the
segmentation loss starts at about 1.8 (cross-entropy ln 3 ~ 1.1 for an unsure 3-class guess, Dice
up to 1), so weight 1 puts it on the same footing as the other terms instead of letting it dominate
the shared backbone's gradients early on. The hand localiser's loss (``lambda_loc``, default 1)
trains its own parameters only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from utils.preprocessing import HAND, IGNORE_LABEL

if TYPE_CHECKING:
    from config import Config

LOSS_KEYS = ('mano_verts', 'mano_joints', 'mano_pose', 'mano_shape', 'joints_img', 'seg', 'loc')
SIGMA_FRACTION = 0.15   # hand localiser: heatmap Gaussian sigma as a share of the hand box's size


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


def centre_heatmap(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """boxes (B, 4) x, y, w, h in 0..1 -> (B, size, size) Gaussian around each box centre (peak 1,
    sigma SIGMA_FRACTION of the box's mean side), on cell centres."""
    cells = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    sigma = (SIGMA_FRACTION * (boxes[:, 2] + boxes[:, 3]) / 2).clamp_min(0.5 / size)
    gx = torch.exp(-(cells[None] - cx[:, None]) ** 2 / (2 * sigma[:, None] ** 2))
    gy = torch.exp(-(cells[None] - cy[:, None]) ** 2 / (2 * sigma[:, None] ** 2))
    return gy[:, :, None] * gx[:, None, :]


def localiser_loss(out: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced focal loss on the centre heatmap (CenterNet's, alpha 2, beta 4), plus L1 on
    log(w, h) and on the centre's offset within its cell, both at the true centre's cell:
    out (B, 5, h, w) (nets.localiser.HandLocaliser), boxes (B, 4) in 0..1 -> scalar."""
    b, _, h, w = out.shape
    target = centre_heatmap(boxes.float(), h)
    prob = out[:, 0].float().sigmoid().clamp(1e-4, 1 - 1e-4)
    peak = target >= target.flatten(1).max(1).values[:, None, None] - 1e-6     # the centre cell
    pos = -((1 - prob) ** 2 * prob.log())[peak].sum()
    neg = -((1 - target) ** 4 * prob ** 2 * (1 - prob).log())[~peak].sum()
    focal = (pos + neg) / b
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2] / 2) * w, (boxes[:, 1] + boxes[:, 3] / 2) * h], 1)
    cell = centre.floor().clamp(min=torch.zeros(2, device=out.device),
                                max=torch.tensor([w - 1.0, h - 1.0], device=out.device))
    at = out[torch.arange(b, device=out.device), :, cell[:, 1].long(), cell[:, 0].long()].float()   # (B, 5)
    size = F.l1_loss(at[:, 1:3], boxes[:, 2:].float().clamp_min(1e-3).log())
    offset = F.l1_loss(at[:, 3:5], centre - cell)
    return focal + size + offset


def compute_losses(pred: dict[str, torch.Tensor], gt: dict[str, torch.Tensor],
                   weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Weighted scalar losses, by name.

    pred: ``verts`` (B, 778, 3), ``joints`` (B, 21, 3) root-relative metres, ``rotmat``
    (B, 16, 3, 3), ``shape`` (B, 10), ``joints_img`` (B, 21, 2), ``seg`` logits (B, 3, h, w)
    when segmentation is on, and ``frame_heat`` (B, 5, L/4, L/4) when the hand localiser runs.
    gt: the same keys (``seg`` as labels (B, h, w), ``frame_box`` (B, 4) for ``frame_heat``).
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
    if 'frame_heat' in pred:
        out['loc'] = localiser_loss(pred['frame_heat'], gt['frame_box'])
    return {key: weights[key] * value for key, value in out.items()}
