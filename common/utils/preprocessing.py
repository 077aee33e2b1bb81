"""Image loading, the hand crop box, augmentation sampling and the crop warp.

The crop follows the reference HandOccNet pipeline: the box around the 2D joints is expanded 1.5x,
clipped to the image and grown to the input aspect ratio; training crops are then scaled by
``1 + 0.25 * clip(N(0,1), -1, 1)``, rotated in-plane by ``30 deg * clip(N(0,1), -2, 2)`` with
probability 0.6, and every colour channel is scaled by ``U(0.8, 1.2)``. One affine map (3, 3) takes
original image pixels to crop pixels; the image, the label map and the 2D joints all go through it
(left hands: the left-right flip is part of the same map).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from errors import UserError
from utils.transforms import mirror_x, rotation_2d, translation

SCALE_FACTOR = 0.25     # crop scale jitter (std, clipped at 1 std)
ROT_FACTOR = 30.0       # in-plane rotation (degrees, std, clipped at 2 std)
ROT_PROB = 0.6          # probability of rotating at all
COLOR_FACTOR = 0.2      # per-channel colour scale in [1 - f, 1 + f]
SEG_STRIDE = 4          # segmentation targets are at 1/4 of the input resolution
BACKGROUND, HAND, OBJECT = 0, 1, 2   # segmentation labels (docs/DESIGN.md, data contracts)
IGNORE_LABEL = 255                   # unknown: no loss, no score


def load_img(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image; a missing or undecodable file raises UserError naming it."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        if not path.is_file():
            raise UserError(f'image {path} does not exist; check the dataset root folder and that '
                            'the dataset is fully extracted')
        raise UserError(f'image {path} cannot be read (corrupt or not an image); re-extract or '
                        're-download it')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def bbox_from_joints(joints_img: np.ndarray, expansion: float = 1.5) -> np.ndarray:
    """(N, 2) pixel joints -> (4,) float32 box x, y, w, h: their extent, expanded about its centre."""
    lo, hi = joints_img.min(0), joints_img.max(0)
    center, size = (lo + hi) / 2, (hi - lo) * expansion
    return np.array([*(center - size / 2), *size], dtype=np.float32)


def process_bbox(bbox: np.ndarray, width: int, height: int, aspect_ratio: float = 1.0,
                 expansion: float = 1.0) -> np.ndarray | None:
    """Clip a box x, y, w, h to the image, grow it about its centre to ``aspect_ratio`` (w / h)
    and scale it by ``expansion``. Returns None when nothing of the box lies inside the image.

    (The reference keeps the box's size when it sticks out at the left or top and moves it inside
    instead; here the part inside the image is kept, which is the same for boxes inside it.)"""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, width - 1.0), min(y + h, height - 1.0)
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0 and x2 > x1 and y2 > y1):
        return None
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    w, h = w * expansion, h * expansion
    return np.array([cx - w / 2, cy - h / 2, w, h], dtype=np.float32)


def whole_image_box(width: int, height: int, aspect_ratio: float = 1.0) -> np.ndarray:
    """The crop box x, y, w, h that holds the whole ``width`` x ``height`` image at ``aspect_ratio``
    (w / h), centred on it (the crop is padded beyond the shorter side)."""
    return process_bbox(np.array([0, 0, width - 1, height - 1]), width, height, aspect_ratio)


FRAME_ZOOM_PROB = 0.5   # hand localiser: share of training frames zoomed in (the rest: whole)
FRAME_MIN_SIDE = 0.3    # smallest zoom window, as a share of the frame's larger side


def sample_frame_window(hand_box: np.ndarray, width: int, height: int,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """A square window x, y, s, s of a ``width`` x ``height`` frame for the hand localiser's
    training: the whole frame (:func:`whole_image_box`, as at test time) or, with probability
    FRAME_ZOOM_PROB, a zoom of side between FRAME_MIN_SIDE of the frame (and twice the hand) and
    the whole frame, placed at random where it holds the whole ``hand_box`` (x, y, w, h)."""
    r = rng if rng is not None else np.random
    whole = whole_image_box(width, height)
    if r.random() >= FRAME_ZOOM_PROB:
        return whole
    x, y, w, h = (float(v) for v in hand_box)
    low = max(FRAME_MIN_SIDE * whole[2], 2.0 * max(w, h))
    side = float(r.uniform(low, whole[2])) if low < whole[2] else float(whole[2])
    x0 = r.uniform(x + w - side, x) if side > w else x + (w - side) / 2
    y0 = r.uniform(y + h - side, y) if side > h else y + (h - side) / 2
    return np.array([x0, y0, side, side], dtype=np.float32)


@dataclass
class AugParams:
    """One draw of the augmentation: crop scale, in-plane rotation (degrees, a positive angle
    turns image +x towards +y) and per-channel colour scale."""
    scale: float = 1.0
    rot: float = 0.0
    color: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))


def sample_aug(rng: np.random.Generator | None = None) -> AugParams:
    """Random training augmentation; ``rng`` defaults to numpy's global generator (which PyTorch
    seeds differently in every DataLoader worker)."""
    r = rng if rng is not None else np.random
    scale = 1.0 + SCALE_FACTOR * float(np.clip(r.standard_normal(), -1.0, 1.0))
    rot = ROT_FACTOR * float(np.clip(r.standard_normal(), -2.0, 2.0)) if r.random() <= ROT_PROB else 0.0
    color = r.uniform(1 - COLOR_FACTOR, 1 + COLOR_FACTOR, size=3).astype(np.float32)
    return AugParams(scale, rot, color)


def crop_affine(bbox: np.ndarray, out_size: int, aug: AugParams, flip: bool = False,
                img_width: int = 0) -> np.ndarray:
    """(3, 3) map from original image pixels to crop pixels.

    The box centre goes to the crop centre, a box ``aug.scale`` times larger fills the crop, and
    the crop shows the image rotated by ``-aug.rot`` (so the box's own axes, rotated by
    ``aug.rot`` in the image, become the crop axes). With ``flip`` the image is first mirrored
    left-right (pixel u -> img_width - 1 - u). The crop is square (out_size x out_size); a box of
    another aspect ratio is stretched to fill it.
    """
    x, y, w, h = (float(v) for v in bbox)
    pre = mirror_x(img_width) if flip else np.eye(3)
    cx, cy = (pre @ np.array([x + w / 2, y + h / 2, 1.0]))[:2]
    zoom = np.diag([out_size / (w * aug.scale), out_size / (h * aug.scale), 1.0])
    return (translation(out_size / 2, out_size / 2) @ zoom @ rotation_2d(-aug.rot)
            @ translation(-cx, -cy) @ pre)


def label_affine(img_to_crop: np.ndarray, label_shape: tuple[int, int], img_shape: tuple[int, int],
                 stride: int = SEG_STRIDE) -> np.ndarray:
    """(3, 3) map from the pixels of a label map to the pixels of the 1/``stride`` crop.

    ``label_shape`` and ``img_shape`` are (H, W); label maps may be stored at another resolution
    than the image (HO3D v3 masks are 1/4 size). Pixel centres are matched at both ends: crop pixel
    u lies at (u + 0.5) / stride - 0.5 of the small crop.
    """
    sy, sx = img_shape[0] / label_shape[0], img_shape[1] / label_shape[1]
    label_to_img = np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])
    crop_to_small = np.array([[1 / stride, 0.0, (1 - stride) / (2 * stride)],
                              [0.0, 1 / stride, (1 - stride) / (2 * stride)], [0.0, 0.0, 1.0]])
    return crop_to_small @ img_to_crop @ label_to_img


def warp_image(img: np.ndarray, affine: np.ndarray, out_size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (out_size, out_size, 3) uint8 crop, bilinear, black outside the image."""
    return cv2.warpAffine(img, np.asarray(affine[:2], dtype=np.float64), (out_size, out_size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def warp_labels(labels: np.ndarray, affine: np.ndarray, out_size: int, outside: int = 0) -> np.ndarray:
    """(h, w) uint8 label map -> (out_size, out_size) uint8, nearest neighbour; pixels from outside
    the image get ``outside`` (0: the black padding is background)."""
    return cv2.warpAffine(labels, np.asarray(affine[:2], dtype=np.float64), (out_size, out_size),
                          flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=outside)


def color_scale(img: np.ndarray, color: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 0..255 with every channel scaled and clipped."""
    out = img.astype(np.float32) * np.asarray(color, dtype=np.float32)
    return np.clip(out, 0.0, 255.0, out=out)
