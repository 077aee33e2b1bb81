"""2D hand head (hourglass -> 21 heatmaps -> soft-argmax joints) and the encoder that turns heatmaps
and features into one vector for the MANO head. Works for any feature-map size."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.mano import NUM_JOINTS


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck residual unit: (B, C_in, h, w) -> (B, C_out, h, w).

    BN-LeakyReLU-conv1x1 (to C_out/2), BN-LeakyReLU-conv3x3, BN-LeakyReLU-conv1x1 (to C_out), plus
    the input (through a 1x1 conv when the widths differ).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = max(1, c_out // 2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.LeakyReLU(inplace=True), nn.Conv2d(c_in, mid, 1),
            nn.BatchNorm2d(mid), nn.LeakyReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.LeakyReLU(inplace=True), nn.Conv2d(mid, c_out, 1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """Hourglass of ``depth`` levels: (B, C, h, w) -> (B, C, h, w).

    Each level keeps a full-resolution skip branch and processes a max-pooled copy (recursively),
    upsampled back to the skip's size, so any h, w with ``h, w >= 2**depth`` works.
    """

    def __init__(self, dim: int, depth: int):
        super().__init__()
        self.skip = ResidualUnit(dim, dim)
        self.down = ResidualUnit(dim, dim)
        self.inner = Hourglass(dim, depth - 1) if depth > 1 else ResidualUnit(dim, dim)
        self.up = ResidualUnit(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode='nearest')


def soft_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Expected pixel-centre position under each heatmap: (B, J, h, w) summing to 1 per joint ->
    (B, J, 2) as (x, y) in 0..1 of the map (pixel i spans [i/w, (i+1)/w])."""
    h, w = heatmaps.shape[-2:]
    xs = (torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype) + 0.5) / h
    return torch.stack([(heatmaps.sum(dim=2) * xs).sum(-1), (heatmaps.sum(dim=3) * ys).sum(-1)], dim=-1)


class HandHead(nn.Module):
    """2D hand head: feature (B, C, h, w) -> heatmaps (B, 21, h, w) (spatial softmax with a learned
    sharpness per joint), its last feature (B, C, h, w), and joints (B, 21, 2) in 0..1 of the crop.

    ``size`` (= h = w, the configured feature size) picks the hourglass depth: up to 4 levels,
    fewer where the innermost level would be smaller than 2x2 (batch norm there needs more than
    one value per channel, even at batch size 1).
    """

    def __init__(self, dim: int, size: int):
        super().__init__()
        depth = max(1, min(4, int(math.log2(size)) - 1))
        self.body = nn.Sequential(
            Hourglass(dim, depth), ResidualUnit(dim, dim),
            nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.LeakyReLU(inplace=True))
        self.score = nn.Conv2d(dim, NUM_JOINTS, 1)
        self.sharpness = nn.Parameter(torch.ones(NUM_JOINTS, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.body(x)
        logits = self.score(y).flatten(2) * self.sharpness                   # (B, 21, h*w)
        heatmaps = logits.softmax(dim=-1).view(x.shape[0], NUM_JOINTS, *x.shape[-2:])
        return heatmaps, y, soft_argmax(heatmaps)


class HandEncoder(nn.Module):
    """Heatmaps (B, 21, h, w) + head feature (B, C, h, w) -> vector (B, 4C).

    Their 1x1 projections are summed and pass 4 stages of two residual units, each stage followed
    by 2x max pooling while the map is at least 4 wide; an average pool to 2x2 then fixes the size.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.from_heatmaps = nn.Conv2d(NUM_JOINTS, dim, 1)
        self.from_feature = nn.Conv2d(dim, dim, 1)
        self.stages = nn.ModuleList(nn.Sequential(ResidualUnit(dim, dim), ResidualUnit(dim, dim))
                                    for _ in range(4))
        self.out_dim = 4 * dim

    def forward(self, heatmaps: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        x = self.from_heatmaps(heatmaps) + self.from_feature(feature)
        for stage in self.stages:
            x = stage(x)
            if min(x.shape[-2:]) >= 4:
                x = F.max_pool2d(x, 2)
        return F.adaptive_avg_pool2d(x, 2).flatten(1)
