"""Helpers (no tests) for the dataset tests: fixtures in the exact HandOccNet schema of HO3D and
DexYCB, written into a temporary folder, and the consistency checks every loader must pass.

Fixture images are drawn so their content can be checked after the crop: the hand is the
silhouette of its MANO mesh (rendered with the annotation camera) in red, an object patch in blue
covers part of it, the background is green, and two markers sit on the projected joints: white on
the wrist, yellow on the middle fingertip. Each frame's true label map (0 background, 1 visible
hand, 2 object) is known exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from utils.mano import ManoLayer
from utils.render import MeshRenderer, RenderMesh

W, H = 640, 480
FOCAL = (600.0, 590.0)
PRINCPT = (331.0, 236.0)     # deliberately off-centre, so a wrong flip convention shows
HAND_RGB = (230, 50, 50)
OBJECT_RGB = (50, 50, 230)
BACKGROUND_RGB = (50, 190, 50)
WRIST_RGB = (255, 255, 255)
TIP_RGB = (255, 255, 0)
MARKER_RADIUS = 6
MIDDLE_TIP = 12               # index of the middle fingertip in utils.mano.JOINT_NAMES

_layers: dict[str, ManoLayer] = {}


def layer(side: str = 'right') -> ManoLayer:
    """The default (MANO or built-in) hand model, float64, one per side for the whole session."""
    if side not in _layers:
        _layers[side] = ManoLayer(side=side, dtype=torch.float64)
    return _layers[side]


def K() -> np.ndarray:
    return np.array([[FOCAL[0], 0, PRINCPT[0]], [0, FOCAL[1], PRINCPT[1]], [0, 0, 1.0]])


def project(points: np.ndarray) -> np.ndarray:
    """(N, 3) camera points -> (N, 2) pixels, written out independently of utils.transforms."""
    p = points @ K().T
    return p[:, :2] / p[:, 2:]


@dataclass
class Frame:
    pose: np.ndarray        # (48,)
    shape: np.ndarray       # (10,)
    joints: np.ndarray      # (21, 3) absolute camera coordinates
    verts: np.ndarray       # (778, 3)
    side: str
    image: np.ndarray       # (H, W, 3) uint8 RGB
    labels: np.ndarray      # (H, W) uint8: 0 background, 1 visible hand, 2 object


def make_frame(rng: np.random.Generator, renderer: MeshRenderer, side: str = 'right',
               with_object: bool = True) -> Frame:
    """A random hand pose, 0.4-0.6 m away, drawn as described in the module docstring."""
    rot = Rotation.random(random_state=int(rng.integers(1 << 31))).as_rotvec()
    pose = np.concatenate([rot, rng.normal(0, 0.2, 45)])
    shape = rng.normal(0, 0.8, 10)
    with torch.no_grad():
        v, j = layer(side)(torch.from_numpy(pose)[None], torch.from_numpy(shape)[None])
    v, j = v[0].numpy(), j[0].numpy()
    centre = v.mean(0)
    depth = rng.uniform(0.4, 0.6)
    target = np.array([rng.uniform(-0.08, 0.08) * depth, rng.uniform(-0.06, 0.06) * depth, depth])
    trans = target - centre
    verts, joints = v + trans, j + trans

    hand = renderer.depth([RenderMesh(verts, layer(side).faces.numpy())], K()) > 0
    labels = np.where(hand, 1, 0).astype(np.uint8)
    if with_object:  # a blue patch over the half of the hand's box nearest the middle fingertip
        ys, xs = np.nonzero(hand)
        tip = project(joints[MIDDLE_TIP:MIDDLE_TIP + 1])[0]
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bx = (x0, int(cx)) if tip[0] < cx else (int(cx), x1)
        by = (y0, int(cy)) if tip[1] < cy else (int(cy), y1)
        labels[by[0]:by[1], bx[0]:bx[1]] = 2
    image = np.empty((H, W, 3), np.uint8)
    for value, rgb in ((0, BACKGROUND_RGB), (1, HAND_RGB), (2, OBJECT_RGB)):
        image[labels == value] = rgb
    uv = project(joints)
    for jid, rgb in ((0, WRIST_RGB), (MIDDLE_TIP, TIP_RGB)):
        cv2.circle(image, (int(round(uv[jid, 0] * 16)), int(round(uv[jid, 1] * 16))),
                   MARKER_RADIUS * 16, rgb, -1, lineType=cv2.LINE_AA, shift=4)
    return Frame(pose, shape, joints, verts, side, image, labels)


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == '.jpg' else []
    assert cv2.imwrite(str(path), image[..., ::-1], params)


def _cam() -> dict:
    return {'focal': list(FOCAL), 'princpt': list(PRINCPT)}


def _gt_annotation(i: int, f: Frame, with_joints_img: bool) -> dict:
    ann = {'id': i, 'image_id': i, 'joints_coord_cam': f.joints.tolist(), 'cam_param': _cam(),
           'mano_param': {'pose': f.pose.tolist(), 'shape': f.shape.tolist()}}
    if with_joints_img:
        ann['joints_img'] = project(f.joints).tolist()
        ann['hand_type'] = f.side
    return ann


def write_ho3d(root: Path, frames: list[Frame], eval_frames: list[Frame], masks: str = 'v2',
               outside: int = 0) -> None:
    """HO3D_{train,evaluation}_data.json, train/<SEQ>/rgb/*.png, evaluation/<SEQ>/rgb/*.png, and
    (``masks='v2'``) train/<SEQ>/seg/*.jpg at half resolution with red hand, blue object.
    ``outside`` extra training entries have their joints far outside the image."""
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, f in enumerate(frames):
        name = f'SEQ{i % 2}/rgb/{i:04d}.png'
        images.append({'id': i, 'file_name': name, 'width': W, 'height': H})
        anns.append(_gt_annotation(i, f, with_joints_img=False))
        _write_rgb(root / 'train' / name, f.image)
        if masks == 'v2':
            mask = np.zeros((H, W, 3), np.uint8)
            mask[f.labels == 1, 0] = 255
            mask[f.labels == 2, 2] = 255
            small = cv2.resize(mask, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST)
            _write_rgb(root / 'train' / f'SEQ{i % 2}/seg/{i:04d}.jpg', small)
    for k in range(outside):
        i = len(frames) + k
        far = frames[0].joints + np.array([5.0, 0.0, 0.0])  # 5 m to the side: off the image
        images.append({'id': i, 'file_name': f'SEQ0/rgb/{i:04d}.png', 'width': W, 'height': H})
        anns.append({**_gt_annotation(i, frames[0], False), 'joints_coord_cam': far.tolist()})
    _dump(root / 'annotations' / 'HO3D_train_data.json', images, anns)

    images, anns = [], []
    for i, f in enumerate(eval_frames):
        name = f'EVAL/rgb/{i:04d}.png'
        uv = project(f.joints)
        x0, y0 = uv.min(0)
        x1, y1 = uv.max(0)
        images.append({'id': i, 'file_name': name, 'width': W, 'height': H})
        anns.append({'id': i, 'image_id': i, 'root_joint_cam': f.joints[0].tolist(),
                     'bbox': [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                     'cam_param': _cam()})
        _write_rgb(root / 'evaluation' / name, f.image)
    _dump(root / 'annotations' / 'HO3D_evaluation_data.json', images, anns)


def write_dexycb(root: Path, frames: list[Frame], split: str) -> None:
    """DEX_YCB_s0_<split>_data.json with color_*.jpg images and labels_*.npz ('seg': 255 hand,
    YCB id 7 for the object) under <SUBJECT>/<SEQUENCE>/<SERIAL>/."""
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, f in enumerate(frames):
        folder = f'20200709-subject-01/20200709_14{split[:2]}/836212060125'
        images.append({'id': i, 'file_name': f'{folder}/color_{i:06d}.jpg', 'width': W, 'height': H})
        anns.append(_gt_annotation(i, f, with_joints_img=True))
        _write_rgb(root / folder / f'color_{i:06d}.jpg', f.image)
        seg = np.select([f.labels == 1, f.labels == 2], [255, 7], 0).astype(np.uint8)
        np.savez_compressed(root / folder / f'labels_{i:06d}.npz', seg=seg,
                            joint_3d=f.joints[None].astype(np.float32))
    _dump(root / 'annotations' / f'DEX_YCB_s0_{split}_data.json', images, anns)


def _dump(path: Path, images: list, anns: list) -> None:
    with open(path, 'w') as fh:
        json.dump({'images': images, 'annotations': anns}, fh)


# ---------------------------------------------------------------------------- checks

def colour_class(img: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in any scale -> class per pixel by dominant colour: 0 green background,
    1 red hand, 2 blue object, -1 anything else (markers, black padding, mixed edges)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    out = np.full(img.shape[:-1], -1)
    out[(g > 2 * r) & (g > 2 * b)] = 0
    out[(r > 2 * g) & (r > 2 * b)] = 1
    out[(b > 2 * r) & (b > 2 * g)] = 2
    return out


def marker_centroid(img: np.ndarray, rgb: tuple, near: np.ndarray, radius: float) -> np.ndarray:
    """(2,) centroid (x, y) of the pixels of a marker colour within ``radius`` of ``near``
    (img: (h, w, 3) float, 0..1 up to the colour augmentation)."""
    c = img / max(img.max(), 1e-6)
    want = np.array(rgb) > 128
    on = np.all(c[..., want] > 0.6, axis=-1) & np.all(c[..., ~want] < 0.45, axis=-1)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    on &= (xx - near[0]) ** 2 + (yy - near[1]) ** 2 < radius ** 2
    ys, xs = np.nonzero(on)
    assert len(xs) > 10, f'marker {rgb} not found in the crop'
    return np.array([xs.mean(), ys.mean()])


def crop_of(item) -> np.ndarray:
    """(S, S, 3) float image of an item."""
    return item[0]['img'].permute(1, 2, 0).numpy()


def kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) rotation R minimising |R a_i - b_i| for (N, 3) centred point sets."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1, 1, d]) @ vt


def mano_joints_rel(pose: np.ndarray, shape: np.ndarray, side: str = 'right') -> np.ndarray:
    """(21, 3) root-relative joints of the default hand model."""
    with torch.no_grad():
        _, j = layer(side)(torch.as_tensor(pose, dtype=torch.float64)[None],
                           torch.as_tensor(shape, dtype=torch.float64)[None])
    j = j[0].numpy()
    return j - j[0]
