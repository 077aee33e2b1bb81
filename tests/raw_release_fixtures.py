"""Helpers (no tests) for the converter tests: tiny copies of the raw HO3D (v2, v3) and DexYCB
releases, written here from known MANO parameters in each release's own conventions, and a
MANO folder with both sides.

The hand model is a random MANO-format model (conftest.random_mano_arrays: MANO's sizes and tree,
random arrays, a non-zero hands_mean), written as MANO_RIGHT.pkl, and its mirror image as
MANO_LEFT.pkl, so every convention shows: a wrong hands_mean, PCA basis, side or fingertip moves
joints by millimetres to centimetres.

HO3D, as its release stores it (shreyashampali/ho3d): ``train.txt``/``evaluation.txt`` lists,
``<split>/<SEQ>/meta/<FRAME>.pkl`` Python-2-style pickles (protocol 2, ``numpy.core`` names,
Latin-1 strings), OpenGL camera axes (y up, z toward the viewer: the hand at negative z),
absolute finger poses (a flat-mean MANO), joints in HO3D's order with HO3D's fingertip vertices
744, 333, 444, 555, 672, evaluation frames with only the wrist and an x1, y1, x2, y2 box. v3 has
.jpg images, .png masks (hand blue, object green, half resolution) and frames without a hand
annotation (None), v2 .png images.

DexYCB, as its release stores it (NVlabs/dex-ycb-toolkit): subject folders with sorted sequence
folders, each with ``meta.yml`` and per camera ``labels_<FRAME>.npz`` (``pose_m`` (1, 51): global
rotation, 45 PCA coefficients of the hand's own side, translation; ``joint_3d`` (1, 21, 3) metres
from manopth's layer; ``joint_2d`` pixels; all 0 / -1 for frames without a hand), and
``calibration/`` with intrinsics per camera and betas per subject hand.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from scipy.spatial.transform import Rotation

from builtin_hand.build import write_mano_pickle
from conftest import random_mano_arrays
from utils.mano import JOINT_NAMES, ManoLayer, mirror_model

HO3D_TIPS = (744, 333, 444, 555, 672)         # thumb ... pinky, HO3D's setup_mano.py
GL = np.array([1.0, -1.0, -1.0])              # OpenCV <-> OpenGL camera axes
# HO3D's joint order, by the names of utils.mano.JOINT_NAMES: MANO's 16 joints, then the tips
HO3D_JOINT_NAMES = ('wrist', 'index1', 'index2', 'index3', 'middle1', 'middle2', 'middle3',
                    'pinky1', 'pinky2', 'pinky3', 'ring1', 'ring2', 'ring3', 'thumb1', 'thumb2',
                    'thumb3', 'thumb4', 'index4', 'middle4', 'ring4', 'pinky4')
DEX_SUBJECTS = ('20200709-subject-01', '20200813-subject-02', '20200820-subject-03', '20200903-subject-04',
                '20200908-subject-05', '20200918-subject-06', '20200928-subject-07', '20201002-subject-08',
                '20201015-subject-09', '20201022-subject-10')
DEX_SERIALS = ('836212060125', '839512060362', '840412060917', '841412060263', '932122060857',
               '932122060861', '932122061900', '932122062010')


def write_mano_folder(folder: Path, seed: int = 5) -> Path:
    """MANO_RIGHT.pkl (a random MANO-format model) and MANO_LEFT.pkl (its mirror image)."""
    right = random_mano_arrays(seed)
    write_mano_pickle(right, folder / 'MANO_RIGHT.pkl')
    write_mano_pickle(mirror_model(right), folder / 'MANO_LEFT.pkl')
    return folder


def python2_pickle(obj, path: Path) -> None:
    """Pickle ``obj`` as a Python 2 / numpy 1 program would name things (protocol 2 writes module
    names as text lines, so renaming them keeps the stream valid)."""
    data = pickle.dumps(obj, protocol=2).replace(b'numpy._core', b'numpy.core')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _image(path: Path, width: int, height: int, rng: np.random.Generator | None = None) -> None:
    """A plain grey image, or with ``rng`` coarse random blocks (so that every crop differs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), 90, np.uint8)
    if rng is not None:
        img = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (width, height),
                         interpolation=cv2.INTER_NEAREST)
    assert cv2.imwrite(str(path), img)


# ------------------------------------------------------------------------------------ HO3D

@dataclass
class Ho3dRelease:
    """What was written: the lists, and per frame ``SEQ/FRAME`` the raw values."""
    root: Path
    version: str
    train: list[str]
    evaluation: list[str]
    unannotated: set[str]
    sizes: dict[str, tuple[int, int]]           # frame -> (width, height) of its image
    meta: dict[str, dict] = field(default_factory=dict)
    hand_mask: dict[str, np.ndarray] = field(default_factory=dict)   # v3: (h, w) bool, mask resolution
    object_mask: dict[str, np.ndarray] = field(default_factory=dict)


def _ho3d_hand(layer: ManoLayer, rng: np.random.Generator, cam: np.ndarray, size: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A random hand in OpenGL camera axes, in view: absolute pose (48,), betas (10,), translation
    (3,), joints (21, 3) in HO3D's order with HO3D's tips."""
    while True:
        pose = np.concatenate([Rotation.random(random_state=int(rng.integers(1 << 31))).as_rotvec(),
                               rng.normal(0.0, 0.4, 45)])
        beta = rng.normal(0.0, 1.0, 10)
        verts, joints = (x[0].numpy() for x in layer(torch.tensor(pose[None]), torch.tensor(beta[None])))
        by_name = dict(zip(JOINT_NAMES, joints))
        by_name.update(zip(('thumb4', 'index4', 'middle4', 'ring4', 'pinky4'), verts[list(HO3D_TIPS)]))
        trans = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), -rng.uniform(0.45, 0.6)]) - joints[0]
        joints = np.stack([by_name[n] for n in HO3D_JOINT_NAMES]) + trans
        uv = (joints * GL) @ cam.T
        uv = uv[:, :2] / uv[:, 2:]
        if (uv > 5).all() and (uv[:, 0] < size[0] - 5).all() and (uv[:, 1] < size[1] - 5).all():
            return pose, beta, trans, joints


def write_ho3d_release(root: Path, version: str, mano_folder: Path, seed: int = 0,
                       frames_per_sequence: int = 5) -> Ho3dRelease:
    """A small HO3D release: two training sequences (one at half size, with its camera scaled),
    ``frames_per_sequence`` (at least 5) frames each, the first five listed out of order, and an
    evaluation sequence of 3 frames; v3 leaves two training frames without hand annotation."""
    rng = np.random.default_rng(seed)
    layer = ManoLayer(mano_folder, flat_hand_mean=True, dtype=torch.float64)
    ext = '.png' if version == 'v2' else '.jpg'
    seqs = {'MC1': (640, 480), 'SM2': (320, 240), 'EV9': (640, 480)}
    train = [f'{seq}/{i:04d}' for i in (3, 0, 4, 1, 2, *range(5, frames_per_sequence)) for seq in ('SM2', 'MC1')]
    evaluation = [f'EV9/{i:04d}' for i in (2, 0, 1)]
    unannotated = {'MC1/0004', 'SM2/0001'} if version == 'v3' else set()
    release = Ho3dRelease(root, version, train, evaluation, unannotated, {})
    for name, frames in (('train', train), ('evaluation', evaluation)):
        (root / f'{name}.txt').parent.mkdir(parents=True, exist_ok=True)
        (root / f'{name}.txt').write_text(''.join(f + '\n' for f in frames))
        for frame in frames:
            seq, fid = frame.split('/')
            size = seqs[seq]
            scale = size[0] / 640
            cam = np.array([[617.3 * scale, 0, 312.1 * scale], [0, 615.9 * scale, 241.7 * scale], [0, 0, 1]])
            cam += np.diag(rng.normal(0, 0.5, 3)) * [1, 1, 0]     # a camera per frame, as v3's
            pose, beta, trans, joints = _ho3d_hand(layer, rng, cam, size)
            obj = {'objName': '006_mustard_bottle', 'objLabel': 5, 'objTrans': rng.normal(size=3),
                   'objRot': rng.normal(size=(3, 1)), 'objCorners3D': rng.normal(size=(8, 3)),
                   'objCorners3DRest': rng.normal(size=(8, 3)), 'camIDList': ['0']}
            if name == 'train':
                meta = {'handPose': pose.astype(np.float32), 'handBeta': beta.astype(np.float32),
                        'handTrans': trans.astype(np.float32), 'handJoints3D': joints.astype(np.float32),
                        'camMat': cam.astype(np.float32), **obj}
                if version == 'v3':
                    meta['handVertContact'] = rng.random(778) > 0.9
                if frame in unannotated:
                    meta.update(handPose=None, handBeta=None, handTrans=None, handJoints3D=None, objRot=None)
            else:
                uv = (joints * GL) @ cam.T
                uv = uv[:, :2] / uv[:, 2:]
                box = np.concatenate([uv.min(0) - 10, uv.max(0) + 10])
                meta = {'handJoints3D': joints[0].astype(np.float32), 'handBoundingBox': box.astype(np.float32),
                        'camMat': cam.astype(np.float32), **obj}
            release.meta[frame] = meta
            release.sizes[frame] = size
            python2_pickle(meta, root / name / seq / 'meta' / f'{fid}.pkl')
            _image(root / name / seq / 'rgb' / f'{fid}{ext}', *size)
            if version == 'v3' and name == 'train':
                _v3_mask(release, frame, root / name / seq / 'seg' / f'{fid}.png', size)
    return release


def _v3_mask(release: Ho3dRelease, frame: str, path: Path, size: tuple[int, int]) -> None:
    """A v3-style mask at half resolution: a hand rectangle in blue, an object one in green
    (written through OpenCV, so channel 0 of BGR is blue)."""
    w, h = size[0] // 2, size[1] // 2
    hand, obj = np.zeros((h, w), bool), np.zeros((h, w), bool)
    hand[h // 4:h // 2, w // 4:w // 2] = True
    obj[h // 2:3 * h // 4, w // 2:3 * w // 4] = True
    bgr = np.zeros((h, w, 3), np.uint8)
    bgr[hand, 0] = 255
    bgr[obj, 1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), bgr)
    release.hand_mask[frame], release.object_mask[frame] = hand, obj


# ------------------------------------------------------------------------------------ DexYCB

@dataclass
class DexRelease:
    """What was written: per subject index, its sequence folder names (sorted) and their sides."""
    root: Path
    sequences: dict[int, list[str]]
    sides: dict[str, str]                        # 'SUBJECT/SEQUENCE' -> 'right' | 'left'
    num_frames: int
    no_hand: set[tuple[str, str, int]]           # (SUBJECT/SEQUENCE, serial, frame) without a hand
    intrinsics: dict[str, tuple[float, float, float, float]]


def write_dexycb_release(root: Path, mano_folder: Path, subjects: tuple[int, ...] = (0, 2),
                         num_sequences: int = 10, num_frames: int = 2, seed: int = 0) -> DexRelease:
    """A small DexYCB release: the given subjects (indices into the toolkit's list; the others
    are missing), ``num_sequences`` sequences each alternating right and left hands, all eight
    cameras, ``num_frames`` frames; every seventh sample has no hand."""
    rng = np.random.default_rng(seed)
    layers = {side: ManoLayer(mano_folder, side=side, use_pca=True, num_pca_comps=45, dtype=torch.float64)
              for side in ('right', 'left')}
    intrinsics = {}
    for k, serial in enumerate(DEX_SERIALS):
        fx, fy, cx, cy = 610.0 + 3 * k, 609.0 + 2 * k, 318.0 - k, 242.0 + k
        intrinsics[serial] = (fx, fy, cx, cy)
        _yaml(root / 'calibration' / 'intrinsics' / f'{serial}_640x480.yml',
              {'color': {'fx': fx, 'fy': fy, 'ppx': cx, 'ppy': cy}, 'depth': {'fx': 1.0, 'fy': 1.0, 'ppx': 0.0, 'ppy': 0.0}})
    release = DexRelease(root, {}, {}, num_frames, set(), intrinsics)
    count = 0
    for s in subjects:
        subject = DEX_SUBJECTS[s]
        betas = {side: rng.normal(0, 1, 10) for side in ('right', 'left')}
        for side in ('right', 'left'):
            _yaml(root / 'calibration' / f'mano_{subject}_{side}' / 'mano.yml', {'betas': betas[side].tolist()})
        names = sorted(f'{subject[:8]}_{140000 + 37 * i:06d}' for i in range(num_sequences))
        release.sequences[s] = names
        for i, name in enumerate(names):
            side = ('right', 'left')[i % 2]
            seq = f'{subject}/{name}'
            release.sides[seq] = side
            _yaml(root / seq / 'meta.yml', {'serials': list(DEX_SERIALS), 'num_frames': num_frames,
                                            'mano_sides': [side], 'mano_calib': [f'{subject}_{side}'],
                                            'ycb_ids': [5, 9], 'ycb_grasp_ind': 0, 'extrinsics': '20200702_151821'})
            for serial in DEX_SERIALS:
                for frame in range(num_frames):
                    count += 1
                    hand = count % 7 != 0
                    if not hand:
                        release.no_hand.add((seq, serial, frame))
                    _dex_labels(root / seq / serial / f'labels_{frame:06d}.npz', layers[side], betas[side],
                                intrinsics[serial], rng, hand)
                    _image(root / seq / serial / f'color_{frame:06d}.jpg', 640, 480, rng)
    return release


def _dex_labels(path: Path, layer: ManoLayer, betas: np.ndarray, cam: tuple, rng: np.random.Generator,
                hand: bool) -> None:
    """One labels_*.npz: pose_m, joint_3d and joint_2d as the toolkit's MANO layer gives them
    (PCA pose, flat_hand_mean=False, translation added), or the no-hand values; a seg map."""
    fx, fy, cx, cy = cam
    if hand:
        pose = np.concatenate([Rotation.random(random_state=int(rng.integers(1 << 31))).as_rotvec(),
                               rng.normal(0, 0.8, 45)])
        trans = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.uniform(0.5, 0.7)])
        _, joints = layer(torch.tensor(pose[None]), torch.tensor(betas[None]), torch.tensor(trans[None]))
        joint_3d = joints[0].numpy()
        joint_2d = np.stack([fx * joint_3d[:, 0] / joint_3d[:, 2] + cx, fy * joint_3d[:, 1] / joint_3d[:, 2] + cy], 1)
        pose_m = np.concatenate([pose, trans])
    else:
        pose_m, joint_3d, joint_2d = np.zeros(51), -np.ones((21, 3)), -np.ones((21, 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, seg=np.zeros((480, 640), np.uint8), pose_y=np.zeros((2, 3, 4), np.float32),
                        pose_m=pose_m[None].astype(np.float32), joint_3d=joint_3d[None].astype(np.float32),
                        joint_2d=joint_2d[None].astype(np.float32))


def _yaml(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
