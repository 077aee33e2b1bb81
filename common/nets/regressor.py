"""Regressor: fused feature map -> 2D joints and MANO mesh (hand head -> encoder -> MANO head)."""
from __future__ import annotations

import torch
from torch import nn

from nets.hand_head import HandEncoder, HandHead
from nets.mano_head import ManoHead
from utils.mano import ManoLayer


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` forward (exactly for 0 and 1, up to rounding between); the gradient flowing back
    through it is multiplied by ``factor``."""
    if factor == 1:
        return x
    if factor == 0:
        return x.detach()
    return x * factor + x.detach() * (1 - factor)


class Regressor(nn.Module):
    """Feature (B, C, h, w) -> dict: ``joints_img`` (B, 21, 2) in 0..1, ``heatmaps`` (B, 21, h, w),
    and the :class:`ManoHead` outputs (``rotmat``, ``pose``, ``shape``, ``verts``, ``joints``).

    ``mesh_grad_scale`` scales the gradient that the MANO losses send back from the encoder into
    the hand head and everything before it (1: end to end, as the paper; 0: the features learn
    from the 2D and segmentation losses alone, which a network trained from scratch needs, see
    ``mesh_grad_scale`` in main/config.py).
    """

    def __init__(self, dim: int, size: int, mano: ManoLayer, mesh_grad_scale: float = 1.0):
        super().__init__()
        self.hand_head = HandHead(dim, size)
        self.encoder = HandEncoder(dim)
        self.mano_head = ManoHead(self.encoder.out_dim, mano)
        self.mesh_grad_scale = mesh_grad_scale

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        heatmaps, head_feature, joints_img = self.hand_head(feat)
        g = self.mesh_grad_scale
        out = self.mano_head(self.encoder(scale_grad(heatmaps, g), scale_grad(head_feature, g)))
        return {'joints_img': joints_img, 'heatmaps': heatmaps, **out}
