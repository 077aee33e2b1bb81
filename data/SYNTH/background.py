"""Procedural backgrounds and camera-like image degradations for SYNTH frames (no downloads).

A background is a base pattern (smooth noise, gradient, stripes or checker, in random colours),
optionally overlaid with blurred blobs, fine grain and a vignette, then defocused. It is drawn at
half resolution and upsampled (it is out of focus anyway; this keeps generation fast). It is built
as (H, W, 3) float32 sRGB in 0..1 and returned as uint8; :func:`compose` lays the rendering over it.
"""
from __future__ import annotations

import cv2
import numpy as np

from SYNTH.objects import random_color


def _coords(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two (H, W) coordinates along perpendicular random directions, in units of the image width."""
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / w
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return x * c + y * s, y * c - x * s


def _smooth_noise(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """(H, W) smooth noise in 0..1: a coarse random grid upsampled with cubic interpolation."""
    grid = rng.random((max(2, cells * h // w), cells), dtype=np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend two colours (3,) or images by a (H, W) weight map -> (H, W, 3)."""
    return a + t[..., None] * (b - a)


def sample_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random (height, width, 3) uint8 background."""
    h, w = height // 2, width // 2
    c1, c2 = random_color(rng, 200).astype(np.float32), random_color(rng, 200).astype(np.float32)
    kind = rng.choice(['noise', 'gradient', 'stripes', 'checker'], p=[0.35, 0.25, 0.2, 0.2])
    if kind == 'noise':
        t = _smooth_noise(h, w, rng, int(rng.integers(3, 12)))
        t = 0.6 * t + 0.4 * _smooth_noise(h, w, rng, int(rng.integers(12, 40)))
    elif kind == 'gradient':
        s = _coords(h, w, rng)[0]
        t = (s - s.min()) / max(float(np.ptp(s)), 1e-6)
    elif kind == 'stripes':
        period = rng.uniform(0.02, 0.25)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * _coords(h, w, rng)[0] / period + rng.uniform(0, 6.3))
        if rng.random() < 0.6:
            t = (t > rng.uniform(0.3, 0.7)).astype(np.float32)
    else:
        cell = rng.uniform(0.03, 0.15)
        s1, s2 = _coords(h, w, rng)
        t = ((np.floor(s1 / cell) + np.floor(s2 / cell)) % 2).astype(np.float32)
    img = _mix(c1, c2, t.astype(np.float32))
    for _ in range(int(rng.integers(0, 5))):              # blurred blobs, drawn at 1/4 size
        blob = np.zeros((h // 4, w // 4), np.float32)
        centre = (int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4)))
        axes = (int(rng.integers(3, w // 12)), int(rng.integers(3, h // 12)))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), float(rng.uniform(0.5, 5)))
        blob = cv2.resize(blob, (w, h), interpolation=cv2.INTER_LINEAR) * rng.uniform(0.4, 1.0)
        img = _mix(img, random_color(rng, 200).astype(np.float32), blob)
    if rng.random() < 0.5:                                            # fine grain
        grain = _smooth_noise(h, w, rng, int(rng.integers(80, 200))) - 0.5
        img = img * (1 + rng.uniform(0.05, 0.25) * grain[..., None])
    if rng.random() < 0.5:                                            # vignette
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / (w / 2) ** 2
        img = img * (1 - rng.uniform(0.1, 0.4) * r2[..., None])
    sigma = rng.uniform(0, 1.5)                                       # defocus
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def compose(rgba: np.ndarray, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The rendered (H, W, 4) uint8 layer (colour premultiplied by its alpha) over the (H, W, 3)
    uint8 background, with camera-like degradations -> (H, W, 3) uint8: white balance and
    exposure shifts, a slight blur, and sensor noise (standard deviation 1-4 grey levels)."""
    keep = cv2.cvtColor(255 - np.ascontiguousarray(rgba[..., 3]), cv2.COLOR_GRAY2RGB)
    img = cv2.add(cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), cv2.multiply(background, keep, scale=1 / 255))
    img = cv2.multiply(img, (*(rng.uniform(0.85, 1.15) * rng.uniform(0.93, 1.07, 3)), 0.0))
    sigma = rng.uniform(0, 0.8)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    y, x = rng.integers(0, _NOISE_SHIFT, 2)
    noise = _noise(h, w, int(rng.integers(1, 5)))[y:y + h, x:x + w]
    return cv2.add(img, noise, dtype=cv2.CV_8U)


_NOISE_SHIFT = 64
_noise_bank: dict[tuple[int, int, int], np.ndarray] = {}


def _noise(h: int, w: int, sigma: int) -> np.ndarray:
    """A fixed (h + 64, w + 64, 3) int16 field of Gaussian noise with standard deviation
    ``sigma`` (made once per process, always the same); frames take shifted windows of it,
    which is much faster than fresh noise."""
    if (h, w, sigma) not in _noise_bank:
        shape = (h + _NOISE_SHIFT, w + _NOISE_SHIFT, 3)
        field = np.random.default_rng(sigma).standard_normal(shape, np.float32) * sigma
        _noise_bank[h, w, sigma] = np.round(field).astype(np.int16)
    return _noise_bank[h, w, sigma]
