"""Interaction-aware segmentation: which pixels are hand and which are object, and the hand view.

Classes: 0 background, 1 hand, 2 object (255 in labels = unknown). The head works on the FPN's
1/4 level; its hand probability masks the image (``hand_branch='image'``) or the 1/8 feature
(``'feature'``) to make the hand view.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nets.backbone import IMAGENET_MEAN
from utils.preprocessing import HAND

NUM_CLASSES = 3


class SegmentationHead(nn.Module):
    """Interaction-aware segmentation head: FPN 1/4 level (B, C, H/4, W/4) -> class logits
    (B, 3, H/4, W/4) for background, hand, object."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, NUM_CLASSES, 1))

    def forward(self, p2: torch.Tensor) -> torch.Tensor:
        return self.body(p2)


def hand_probability(logits: torch.Tensor) -> torch.Tensor:
    """P(hand) of segmentation logits (B, 3, h, w) -> (B, 1, h, w), cut off from the gradient.

    The hand view is made from the segmentation as it stands: the mesh losses do not train the
    segmentation head through the mask. Without the cut, their gradient, 10x that of the
    segmentation loss in the head, takes the mask over and it never learns to find the hand.
    """
    return logits.detach().softmax(dim=1)[:, HAND:HAND + 1]


def hand_image(img: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The image with everything but the hand replaced by the ImageNet mean colour (zero after
    the backbone's normalisation): img (B, 3, H, W), logits (B, 3, H/4, W/4) -> (B, 3, H, W)."""
    p_hand = F.interpolate(hand_probability(logits), size=img.shape[-2:],
                           mode='bilinear', align_corners=False)
    fill = img.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return img * p_hand + fill * (1 - p_hand)


def hand_feature(feat: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The feature gated by the hand probability: feat (B, C, h, w), logits (B, 3, 2h, 2w) ->
    (B, C, h, w)."""
    p_hand = F.adaptive_avg_pool2d(hand_probability(logits), feat.shape[-2:])
    return feat * p_hand
