"""Drawing on images: the 2D hand skeleton, segmentation labels coloured over a picture, boxes,
and a sheet of predictions on network crops.

Images are (H, W, 3) uint8 RGB; functions return a new image and leave their input alone.
Joints follow utils.mano.JOINT_NAMES (wrist, then thumb, index, middle, ring, pinky, 4 each).
"""
from __future__ import annotations

import cv2
import numpy as np

from utils.mano import JOINT_NAMES, NUM_JOINTS
from utils.preprocessing import HAND, OBJECT

FINGERS = ('thumb', 'index', 'middle', 'ring', 'pinky')
# RGB colour of each finger's bones and joints; the wrist is white.
FINGER_COLOURS = {'thumb': (230, 50, 50), 'index': (245, 170, 30), 'middle': (60, 200, 60),
                  'ring': (40, 150, 240), 'pinky': (190, 70, 220)}
WRIST_COLOUR = (255, 255, 255)
# (parent, child) joint indices of the 20 bones: each finger's chain starts at the wrist.
BONES = tuple((0 if k == 1 else JOINT_NAMES.index(f'{finger}{k - 1}'), JOINT_NAMES.index(f'{finger}{k}'))
              for finger in FINGERS for k in range(1, 5))
# Segmentation labels (0 background, 1 hand, 2 object) -> RGB tint.
LABEL_COLOURS = {HAND: (40, 220, 60), OBJECT: (230, 60, 220)}


def _finger_of(joint: int) -> str | None:
    name = JOINT_NAMES[joint]
    return next((f for f in FINGERS if name.startswith(f)), None)


def _scale(img: np.ndarray) -> float:
    """Line widths and radii grow with the image: 1 at 256 px on the short side."""
    return max(min(img.shape[:2]) / 256.0, 1.0)


def draw_skeleton(img: np.ndarray, joints_2d: np.ndarray) -> np.ndarray:
    """The hand skeleton drawn over ``img``: joints_2d (21, 2) pixel coordinates; bones and
    joints coloured per finger (FINGER_COLOURS), the wrist white, each joint outlined in black."""
    joints_2d = np.asarray(joints_2d, dtype=np.float64)
    if joints_2d.shape != (NUM_JOINTS, 2):
        raise ValueError(f'joints_2d must be ({NUM_JOINTS}, 2), got {joints_2d.shape}')
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    k = _scale(img)
    shift = 4  # sub-pixel precision of the OpenCV drawing calls
    pts = np.round(joints_2d * (1 << shift)).astype(np.int64)
    for parent, child in BONES:
        colour = FINGER_COLOURS[_finger_of(child)]
        cv2.line(out, tuple(map(int, pts[parent])), tuple(map(int, pts[child])), colour,
                 max(int(round(2 * k)), 1), cv2.LINE_AA, shift)
    radius = int(round(3.5 * k * (1 << shift)))
    for j, p in enumerate(pts):
        finger = _finger_of(j)
        colour = FINGER_COLOURS[finger] if finger else WRIST_COLOUR
        cv2.circle(out, tuple(map(int, p)), radius, colour, -1, cv2.LINE_AA, shift)
        cv2.circle(out, tuple(map(int, p)), radius, (0, 0, 0), 1, cv2.LINE_AA, shift)
    return out


def colour_labels(img: np.ndarray, labels: np.ndarray, colours: dict[int, tuple] | None = None,
                  alpha: float = 0.5) -> np.ndarray:
    """``img`` with each labelled region tinted (``alpha`` of its colour) and its border pixels
    painted in it (the outline lies inside the region).

    labels (H, W) integers of the image's size; ``colours`` maps a label to an RGB colour
    (default LABEL_COLOURS: hand green, object magenta); other labels are left as they are.
    """
    if labels.shape != img.shape[:2]:
        raise ValueError(f'labels {labels.shape} must have the image size {img.shape[:2]}')
    colours = LABEL_COLOURS if colours is None else colours
    out = img.astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    for label, colour in colours.items():
        mask = labels == label
        tint = np.asarray(colour, dtype=np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * tint
        edges = mask & (cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) == 0)
        out[edges] = tint
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_box(img: np.ndarray, box: np.ndarray, colour: tuple = (255, 255, 255),
             text: str | None = None) -> np.ndarray:
    """``img`` with the box x, y, w, h (pixels) outlined, and ``text`` written above it."""
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    x, y, w, h = (float(v) for v in box)
    p1, p2 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
    cv2.rectangle(out, p1, p2, colour, max(int(round(_scale(img))), 1), cv2.LINE_AA)
    return put_label(out, text, p1[0], p1[1], colour) if text else out


def put_label(img: np.ndarray, text: str, x: int, y: int, colour: tuple = (255, 255, 255)) -> np.ndarray:
    """``img`` with ``text`` on a black strip whose bottom-left corner is near (x, y), moved
    inside the image where needed."""
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    scale = 0.45 * _scale(img)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = max(y - base - 2, th + 2)
    tx = min(max(x, 0), max(out.shape[1] - tw - 2, 0))
    cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), (0, 0, 0), -1)
    cv2.putText(out, text, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out


def prediction_sheet(crops: np.ndarray, joints_pred: np.ndarray, seg_pred: np.ndarray | None = None,
                     joints_gt: np.ndarray | None = None, tile: int = 160) -> np.ndarray:
    """A picture of predictions on network crops: one column per sample; rows: the predicted 2D
    skeleton, the predicted segmentation (when given), the ground-truth skeleton (when given).

    crops (N, S, S, 3) uint8 RGB; joints_pred, joints_gt (N, 21, 2) in 0..1 of the crop; seg_pred
    (N, s, s) labels (0 background, 1 hand, 2 object). Each crop is scaled to ``tile`` pixels.
    Returns (rows * tile, N * tile, 3) uint8 RGB.
    """
    n = len(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or joints_pred.shape != (n, NUM_JOINTS, 2):
        raise ValueError(f'crops must be (N, S, S, 3) and joints_pred (N, {NUM_JOINTS}, 2), got '
                         f'{crops.shape} and {joints_pred.shape}')
    size = crops.shape[1]
    big = [cv2.resize(c, (tile, tile), interpolation=cv2.INTER_LINEAR) for c in crops]

    def to_tile(joints: np.ndarray) -> np.ndarray:  # 0..1 of the crop -> tile pixels (centres at integers)
        return (joints * size + 0.5) * tile / size - 0.5

    rows = [('prediction', [draw_skeleton(b, to_tile(j)) for b, j in zip(big, joints_pred)])]
    if seg_pred is not None:
        labels = [cv2.resize(s.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
                  for s in seg_pred]
        rows.append(('segmentation', [colour_labels(b, lab) for b, lab in zip(big, labels)]))
    if joints_gt is not None:
        rows.append(('ground truth', [draw_skeleton(b, to_tile(j)) for b, j in zip(big, joints_gt)]))
    lines = []
    for name, tiles in rows:
        line = np.concatenate(tiles, axis=1)
        lines.append(put_label(line, name, 2, 16))
    return np.concatenate(lines, axis=0)
