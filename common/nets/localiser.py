"""Hand localiser: where the hand is in a whole frame, so an image needs no hand box.

A light CNN of its own (not the backbone: that one learns from hand crops only) on the whole frame,
letterboxed to a small square (L x L), predicts at 1/4 resolution a hand-centre heatmap and, at
each cell, the hand box's size and the centre's offset within the cell (CenterNet-style). Trained
in the same run as the network, on the same images, from the box of the projected ground-truth
joints (``data/dataset.py``), at its own learning rate (``training.make_optimizer``).

Boxes here are x, y, w, h in 0..1 of the L x L frame. The loss is ``nets.loss.localiser_loss``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
CHANNELS = 5                         # centre logit, log w, log h, x and y offset in the cell
WIDTHS = (16, 24, 32, 64)            # channels at strides 2, 4, 8, 16


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HandLocaliser(nn.Module):
    """frame (B, 3, L, L) RGB in 0..1 -> (B, 5, L/4, L/4): channel 0 the hand-centre logit,
    channels 1-2 log(w, h) of the hand box in units of the frame side, channels 3-4 the centre's
    x, y offset from the cell's corner in cells (0..1), at every cell."""

    def __init__(self):
        super().__init__()
        w1, w2, w3, w4 = WIDTHS
        self.down = nn.ModuleList([nn.Sequential(_conv(3, w1, 2), _conv(w1, w1)),
                                   nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2)),
                                   nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3)),
                                   nn.Sequential(_conv(w3, w4, 2), _conv(w4, w4))])
        self.lateral = nn.ModuleList([nn.Conv2d(w, w2, 1) for w in (w2, w3, w4)])
        self.head = nn.Sequential(_conv(w2, w2), nn.Conv2d(w2, CHANNELS, 1))
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -4.0   # start with "no hand anywhere": a stable focal loss

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame - 0.5
        feats = []
        for stage in self.down:
            x = stage(x)
            feats.append(x)
        top = self.lateral[2](feats[3])
        for lat, feat in ((self.lateral[1], feats[2]), (self.lateral[0], feats[1])):
            top = lat(feat) + F.interpolate(top, size=feat.shape[-2:], mode='nearest')
        return self.head(top)


def decode(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """out (B, 5, h, w) -> the most likely hand box per frame (B, 4) x, y, w, h in 0..1 and its
    score (B,) in 0..1: the peak cell, its predicted offset and size."""
    b, _, h, w = out.shape
    score, idx = out[:, 0].float().sigmoid().flatten(1).max(1)
    cy, cx = idx // w, idx % w
    at = out[torch.arange(b, device=out.device), :, cy, cx].float()                   # (B, 5)
    centre = torch.stack([(cx + at[:, 3]) / w, (cy + at[:, 4]) / h], 1)
    size = at[:, 1:3].exp()
    return torch.cat([centre - size / 2, size], 1), score
