"""HO3D (v2, and v3 with the same annotation files) in the HandOccNet format.

HandOccNet wrote its annotation files from HO3D v2's frame lists (11,524 evaluation frames). With
v3 images they are right only where v3 keeps v2's sequences and frame numbers, and a v3 CodaLab
submission needs v3's own evaluation list, which these files do not hold: write v3 annotation
files in the same format for that.

Files under the config's ``ho3d_root`` (default ``data/HO3D/data``), as the HandOccNet README lays out::

    annotations/HO3D_train_data.json        HandOccNet's preprocessed annotation files
    annotations/HO3D_evaluation_data.json
    train/<SEQ>/rgb/<FRAME>.png             images (v3: .jpg), 640x480; file_name = '<SEQ>/rgb/<FRAME>.png'
    train/<SEQ>/seg/<FRAME>.jpg             HO3D's own hand/object masks (v3: .png), training only
    evaluation/<SEQ>/rgb/<FRAME>.png

What the annotation files hold (HandOccNet's ``data_parsing/HO3D.py``, which wrote them):

- ``images``: ``id``, ``file_name`` (relative to ``train/`` or ``evaluation/``), ``width`` 640,
  ``height`` 480.
- train ``annotations``: ``joints_coord_cam`` 21x3 metres = HO3D's ``handJoints3D`` times
  (1, -1, -1), i.e. already converted from HO3D's OpenGL axes to OpenCV camera axes, and reordered
  from HO3D's MANO order to wrist, thumb 1-4, index 1-4, middle 1-4, ring 1-4, pinky 1-4 (the
  order of utils.mano.JOINT_NAMES); ``cam_param {focal, princpt}`` from ``camMat``;
  ``mano_param {pose: 48, shape: 10}``: full axis-angle, flat, the global rotation turned into the
  OpenCV camera frame and the 45 finger values minus MANO's ``hands_mean`` (so relative to
  hands_mean, flat_hand_mean=False). No translation: the mesh is placed by its wrist.
- evaluation ``annotations``: ``root_joint_cam`` (3, metres, OpenCV axes), ``bbox`` x, y, w, h
  (HO3D's ``handBoundingBox`` converted from x1, y1, x2, y2) and ``cam_param``; no hand ground
  truth (``has_gt = False`` for the test split, whose results go to the HO3D CodaLab server).
- All hands are right hands.

Crop boxes as in the reference: training boxes from the projected 3D joints (expanded 1.5x);
evaluation boxes from the annotation ``bbox`` expanded 1.5x.

HO3D's own segmentation masks (``train/<SEQ>/seg/<FRAME>``): v2 ships JPEG colour images with the
hand in the red channel and the object in the blue channel; v3's separately downloaded
"segmentations_rendered" set ships PNGs at a quarter of the RGB resolution whose blue channel is
the hand (read with OpenCV as channel 0 of BGR by users of v3) and, we assume, red the object.
A channel counts where it is above 127 (JPEG noise); a pixel in both is hand. Masks of any
resolution are stretched over the image. Entries without a mask file get the rendered MANO
silhouette instead (see data/dataset.py), and loading says how many did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dataset import HandObjectDataset
from utils.preprocessing import load_img

# (hand channel, object channel) in RGB order, by mask file type
MASK_CHANNELS = {'.jpg': (0, 2), '.png': (2, 0)}


class HO3D(HandObjectDataset):
    """HO3D in HandOccNet's annotation format; the test split reads the evaluation file."""

    root_field = 'ho3d_root'
    annotation_files = {'train': 'annotations/HO3D_train_data.json',
                        'test': 'annotations/HO3D_evaluation_data.json'}
    gt_splits = ('train',)
    mask_location = 'SEQ/seg/NNNN.jpg (v2) or .png (v3), beside SEQ/rgb/'

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor], data_split: str,
                 root: str | Path, input_size: int, mano_path: str | Path | None = None):
        self._rgb_suffix: str | None = None
        self._seg_suffix: str | None = None
        super().__init__(transform, data_split, root, input_size, mano_path)

    @property
    def split_dir(self) -> Path:
        return self.root / ('train' if self.data_split == 'train' else 'evaluation')

    def image_path(self, img: dict) -> Path:
        path = self.split_dir / img['file_name']
        if self._rgb_suffix is None:  # v2 stores .png, v3 .jpg under the same names: fixed by the
            alt = path.with_suffix('.jpg' if path.suffix == '.png' else '.png')   # first image found
            found = next((p for p in (path, alt) if p.is_file()), None)
            if found is None:
                return path
            self._rgb_suffix = found.suffix
        return path.with_suffix(self._rgb_suffix)

    def mask_path(self, img: dict, ann: dict) -> Path | None:
        rgb = Path(img['file_name'])
        if rgb.parent.name != 'rgb':
            return None
        stem = self.split_dir / rgb.parent.parent / 'seg' / rgb.stem
        if self._seg_suffix is None:  # v2 masks are .jpg, v3 .png; fixed by the first one found
            self._seg_suffix = next((s for s in MASK_CHANNELS if stem.with_suffix(s).is_file()), None)
            if self._seg_suffix is None:
                return None
        return stem.with_suffix(self._seg_suffix)

    def read_mask(self, path: Path) -> np.ndarray:
        rgb = load_img(path)
        hand_ch, obj_ch = MASK_CHANNELS.get(path.suffix.lower(), MASK_CHANNELS['.jpg'])
        labels = np.zeros(rgb.shape[:2], np.uint8)
        labels[rgb[..., obj_ch] > 127] = 2
        labels[rgb[..., hand_ch] > 127] = 1
        return labels

    def missing_annotation_hint(self) -> str:
        return ("download HandOccNet's preprocessed HO3D annotation files (HO3D_train_data.json, "
                'HO3D_evaluation_data.json, linked from https://github.com/namepllet/HandOccNet) '
                f'into {self.root / "annotations"}, or point --set ho3d_root=FOLDER at your copy')
