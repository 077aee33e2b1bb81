"""IIC (Interaction Information Capture): how the hand view and the full view exchange information.

IET lets every hand-view position ask the full view for context (cross-attention whose output is
scaled per query by a sigmoid gate, the feature-injection form of occlusion-robust hand networks);
CGBlock then fuses that answer with the hand feature using local, surrounding and global context.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nets.layers import Mlp, PositionEmbedding, init_transformer_weights, to_map, to_tokens


class IETLayer(nn.Module):
    """One IET layer: gated cross-attention + MLP; hand tokens (B, N, C), full-view tokens (B, N, C)
    -> hand tokens (B, N, C), both with residuals.

    Per head, with ``q, k, v`` from hand (q) and full view (k, v) and a second pair ``q', k'``::

        out_i = sigmoid(mean_j <q'_i, k'_j> / sqrt(d)) * sum_j softmax_j(<q_i, k_j> / sqrt(d)) v_j

    The sigmoid map scales each row of the softmax map, so a hand position that finds nothing
    useful in the full view takes little from it. The mean over keys (rather than a sum) keeps the
    gate's range independent of the feature-map size; it equals ``<q'_i, mean_j k'_j>``, so the
    gate costs O(N) instead of an N x N map.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, size: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f'IET: heads={heads} does not divide dim={dim}')
        self.heads = heads
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pos_q, self.pos_k = PositionEmbedding(dim, size), PositionEmbedding(dim, size)
        self.to_q = nn.Linear(dim, 2 * dim)   # q and the gate's q'
        self.to_k = nn.Linear(dim, 2 * dim)   # k and the gate's k'
        self.to_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, heads, N, C/heads)."""
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def _queries(self, hand: torch.Tensor, full: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per head (B, heads, N, d): q, k, v, and the gate (B, heads, N, 1)."""
        hq, fk = self.norm_q(hand), self.norm_kv(full)
        q, q_gate = self.to_q(self.pos_q(hq)).chunk(2, dim=-1)
        k, k_gate = self.to_k(self.pos_k(fk)).chunk(2, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(self.to_v(fk))
        k_mean = self._split(k_gate).mean(dim=2, keepdim=True)                        # (B, h, 1, d)
        gate = torch.sigmoid((self._split(q_gate) * k_mean).sum(-1, keepdim=True)
                             * q.shape[-1] ** -0.5)                                   # (B, h, N, 1)
        return q, k, v, gate

    def attention(self, hand: torch.Tensor, full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the layer looks at: hand (B, N, C), full (B, N, C) -> the softmax attention of
        each hand position over the full view's (B, heads, N, N) and the gate (B, heads, N)."""
        q, k, _, gate = self._queries(hand, full)
        return (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1), gate[..., 0]

    def forward(self, hand: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """hand (B, N, C) queries, full (B, N, C) keys/values -> (B, N, C)."""
        b, n, c = hand.shape
        q, k, v, gate = self._queries(hand, full)
        attn = F.scaled_dot_product_attention(q, k, v)                               # (B, h, N, d)
        out = (attn * gate).transpose(1, 2).reshape(b, n, c)
        x = hand + self.proj(out)
        return x + self.mlp(self.norm_mlp(x))


class IET(nn.Module):
    """IET, the transformer of IIC: the hand feature queries the original (full-view) feature.

    hand (B, C, h, w), full (B, C, h, w) -> (B, C, h, w); ``depth`` :class:`IETLayer` s, each
    querying the same full-view feature. ``size`` = h = w fixes the learned position embeddings.
    """

    def __init__(self, dim: int, heads: int, depth: int, mlp_ratio: float, size: int):
        super().__init__()
        self.layers = nn.ModuleList(IETLayer(dim, heads, mlp_ratio, size) for _ in range(depth))
        self.apply(init_transformer_weights)

    def forward(self, hand: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        h, w = hand.shape[-2:]
        x, kv = to_tokens(hand), to_tokens(full)
        for layer in self.layers:
            x = layer(x, kv)
        return to_map(x, h, w)


class CGBlock(nn.Module):
    """CGBlock (context-guided block): fuses the IET output with the hand feature.

    a (B, C, h, w), hand (B, C, h, w) -> (B, C, h, w). The two are concatenated and reduced by a
    1x1 conv (x); a local 3x3 conv and a dilated 3x3 "surrounding" conv each give half the
    channels; their concatenation goes through BN + PReLU (joint feature), is re-weighted per
    channel by global context (average pool, two FC layers, sigmoid) and added to x.
    """

    def __init__(self, dim: int, dilation: int = 2, reduction: int = 8):
        super().__init__()
        half = dim // 2
        self.reduce = nn.Sequential(nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim),
                                    nn.PReLU(dim))
        self.local = nn.Conv2d(dim, half, 3, padding=1, bias=False)
        self.surround = nn.Conv2d(dim, dim - half, 3, padding=dilation, dilation=dilation, bias=False)
        self.joint = nn.Sequential(nn.BatchNorm2d(dim), nn.PReLU(dim))
        hidden = max(4, dim // reduction)
        self.glob = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, hidden),
                                  nn.ReLU(inplace=True), nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, a: torch.Tensor, hand: torch.Tensor) -> torch.Tensor:
        x = self.reduce(torch.cat([a, hand], dim=1))
        y = self.joint(torch.cat([self.local(x), self.surround(x)], dim=1))
        return x + y * self.glob(y)[:, :, None, None]
