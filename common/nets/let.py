"""Refinement transformers on the fused feature map: LET and the plain block the baseline uses instead.

Both map (B, C, h, w) -> (B, C, h, w) and use ``scaled_dot_product_attention`` for the softmax
attention. Blocks are pre-norm (LayerNorm before attention and MLP) with residuals.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nets.layers import Mlp, PositionEmbedding, init_transformer_weights, to_map, to_tokens


def stripe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stripe: int) -> torch.Tensor:
    """Softmax attention inside horizontal stripes of ``stripe`` rows.

    q, k, v (B, g, h, w, d) -> (B, g, h, w, d); position (y, x) attends to every position whose row
    lies in the same band ``y // stripe``. Vertical stripes: transpose h and w around the call.
    """
    b, g, h, w, d = q.shape
    windows = [t.reshape(b, g, h // stripe, stripe * w, d) for t in (q, k, v)]
    return F.scaled_dot_product_attention(*windows).reshape(b, g, h, w, d)


class LETBlock(nn.Module):
    """One LET block: cross-shaped stripe self-attention with LePE, then MLP; (B, C, h, w) -> same.

    Half the heads attend within horizontal stripes (``stripe`` rows by the full width), half within
    vertical stripes (full height by ``stripe`` columns), as in CSWin, so one block sees a cross
    through every position. LePE (locally enhanced positional encoding): a depth-wise 3x3 conv of V
    (over the whole map, so it also reaches across stripe borders), added to the attention output,
    gives the position information the attention lacks.
    """

    def __init__(self, dim: int, heads: int, stripe: int, mlp_ratio: float):
        super().__init__()
        if heads < 2 or heads % 2 or dim % heads:
            raise ValueError(f'LET: heads={heads} must be even and divide dim={dim}')
        self.heads, self.stripe = heads, stripe
        self.norm_attn, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, g = self.stripe, self.heads // 2
        if h % s or w % s:
            raise ValueError(f'LET: stripe width {s} does not divide the {h}x{w} feature map')
        tokens = to_tokens(x)
        qkv = self.qkv(self.norm_attn(tokens)).view(b, h, w, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5)                               # each (B, heads, h, w, d)
        rows = stripe_attention(q[:, :g], k[:, :g], v[:, :g], s)
        cols = stripe_attention(*(t[:, g:].transpose(2, 3) for t in (q, k, v)), s).transpose(2, 3)
        attn = torch.cat([rows, cols], dim=1).permute(0, 2, 3, 1, 4).reshape(b, h * w, c)
        v_map = v.permute(0, 1, 4, 2, 3).reshape(b, c, h, w).contiguous()   # channels = head * d + i
        lepe = self.lepe(v_map)
        tokens = tokens + self.proj(attn + to_tokens(lepe))
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return to_map(tokens, h, w)


class LET(nn.Module):
    """LET (Local Enhancing Transformer): ``depth`` :class:`LETBlock` s; (B, C, h, w) -> same."""

    def __init__(self, dim: int, heads: int, depth: int, stripe: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.Sequential(*(LETBlock(dim, heads, stripe, mlp_ratio) for _ in range(depth)))
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class SelfAttentionBlock(nn.Module):
    """Plain transformer block (global multi-head self-attention over all h*w positions, learned
    position embedding on queries and keys, MLP); the baseline's stand-in for LET.
    (B, C, h, w) -> same; ``size`` = h = w sizes the position embedding."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, size: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f'self-attention: heads={heads} does not divide dim={dim}')
        self.heads = heads
        self.norm_attn, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pos = PositionEmbedding(dim, size)
        self.qk = nn.Linear(dim, 2 * dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = to_tokens(x)
        normed = self.norm_attn(tokens)
        heads = (b, h * w, self.heads, c // self.heads)
        q, k = (t.view(heads).transpose(1, 2) for t in self.qk(self.pos(normed)).chunk(2, dim=-1))
        v = self.v(normed).view(heads).transpose(1, 2)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, c)
        tokens = tokens + self.proj(attn)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return to_map(tokens, h, w)


class SelfAttention(nn.Module):
    """``depth`` :class:`SelfAttentionBlock` s; (B, C, h, w) -> same."""

    def __init__(self, dim: int, heads: int, depth: int, mlp_ratio: float, size: int):
        super().__init__()
        self.blocks = nn.Sequential(*(SelfAttentionBlock(dim, heads, mlp_ratio, size)
                                      for _ in range(depth)))
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)
