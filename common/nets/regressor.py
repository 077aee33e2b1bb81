"""Regressor: fused feature map -> 2D joints and MANO mesh (hand head -> encoder -> MANO head)."""
from __future__ import annotations

import torch
from torch import nn

from nets.hand_head import HandEncoder, HandHead
from nets.mano_head import ManoHead
from utils.mano import ManoLayer


class Regressor(nn.Module):
    """Feature (B, C, h, w) -> dict: ``joints_img`` (B, 21, 2) in 0..1, ``heatmaps`` (B, 21, h, w),
    and the :class:`ManoHead` outputs (``rotmat``, ``pose``, ``shape``, ``verts``, ``joints``)."""

    def __init__(self, dim: int, size: int, mano: ManoLayer):
        super().__init__()
        self.hand_head = HandHead(dim, size)
        self.encoder = HandEncoder(dim)
        self.mano_head = ManoHead(self.encoder.out_dim, mano)

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        heatmaps, head_feature, joints_img = self.hand_head(feat)
        out = self.mano_head(self.encoder(heatmaps, head_feature))
        return {'joints_img': joints_img, 'heatmaps': heatmaps, **out}
