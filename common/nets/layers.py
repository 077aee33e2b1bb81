"""Small building blocks shared by the transformer modules (IET, LET, the baseline block)."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Transformer feed-forward: Linear -> GELU -> Linear; tokens (..., C) -> (..., C)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = max(1, round(dim * ratio))
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PositionEmbedding(nn.Module):
    """Learned absolute position embedding for a fixed h x w grid: tokens (B, h*w, C) -> same."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.empty(1, size * size, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] != self.weight.shape[1]:
            raise ValueError(f'position embedding is sized for a {self.size}x{self.size} feature map '
                             f'({self.weight.shape[1]} tokens), got {tokens.shape[1]} tokens')
        return tokens + self.weight


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C), row-major over the grid."""
    return x.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w), contiguous (the convs that follow then keep the default memory
    format, and so do their weight gradients); the inverse of :func:`to_tokens`."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w).contiguous()


def init_transformer_weights(module: nn.Module) -> None:
    """ViT-style start for the Linear layers of a transformer: truncated normal (std 0.02), zero bias.
    Use with ``module.apply``."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
