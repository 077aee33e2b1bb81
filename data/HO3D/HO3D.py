"""HO3D v2 and v3 in the HandOccNet format.

The config's ``ho3d_version`` picks the annotation files: v2 reads HandOccNet's files (written from
HO3D v2's frame lists, 11,524 evaluation frames), v3 reads files of the same format written from
the v3 release by ``data/HO3D/build_annotations.py`` (v3's own lists: its 20,137 evaluation frames
are what the v3 CodaLab server scores). That script writes v2's files from the v2 release too.

Files under the config's ``ho3d_root`` (default ``data/HO3D/data``), as the HandOccNet README lays out::

    annotations/HO3D_train_data.json        v2: HandOccNet's preprocessed files, or build_annotations.py's
    annotations/HO3D_evaluation_data.json
    annotations/HO3D_v3_train_data.json     v3: written by build_annotations.py --version v3
    annotations/HO3D_v3_evaluation_data.json
    train/<SEQ>/rgb/<FRAME>.png             images (v3: .jpg), 640x480; file_name '<SEQ>/rgb/<FRAME>.png' (v3: .jpg)
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
- All hands are right hands. Their joints' fingertips are HO3D's own vertices
  (``fingertips = 'ho3d'``, utils.mano.FINGERTIPS), as are the fingertips the challenge scores.

Crop boxes as in the reference: training boxes from the projected 3D joints (expanded 1.5x);
evaluation boxes from the annotation ``bbox`` expanded 1.5x.

HO3D's own segmentation masks (``train/<SEQ>/seg/<FRAME>``): v2 ships JPEG colour images with the
hand in the red channel and the object in the blue channel; v3 ships PNGs at half the RGB
resolution (320x240) with the hand in the blue channel and the object in the green channel (255
where set), as v3's users read them (channels 0 and 1 of OpenCV's BGR: hongsukchoi/HandNeRF_RELEASE,
data/HO3D/HO3D.py, ``load_seg``). A channel counts where it is above 127 (JPEG noise); a pixel in
both is hand. Masks of any resolution are stretched over the image. Entries without a mask file
get the rendered MANO silhouette instead (see data/dataset.py), and loading says how many did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dataset import HandObjectDataset
from utils.preprocessing import load_img

# (hand channel, object channel) in RGB order, by mask file type: v2 .jpg, v3 .png
MASK_CHANNELS = {'.jpg': (0, 2), '.png': (2, 1)}
VERSIONS = ('v2', 'v3')
# Frames in each version's evaluation list, as the challenge's own scripts count them
# (shreyashampali/ho3d, utils/vis_utils.py, db_size).
EVALUATION_SIZES = {'v2': 11524, 'v3': 20137}
LIST_SPLITS = {'train': 'train', 'test': 'evaluation'}   # loader split -> HO3D's list and folder


def annotation_file(version: str, list_split: str) -> str:
    """The annotation file of a version ('v2', 'v3') and list ('train', 'evaluation'), relative
    to the root: HandOccNet's names for v2, with a ``v3`` tag for v3."""
    tag = 'HO3D_v3' if version == 'v3' else 'HO3D'
    return f'annotations/{tag}_{list_split}_data.json'


class HO3D(HandObjectDataset):
    """HO3D in HandOccNet's annotation format; the test split reads the evaluation file."""

    root_field = 'ho3d_root'
    gt_splits = ('train',)
    mask_location = 'SEQ/seg/NNNN.jpg (v2) or .png (v3), beside SEQ/rgb/'
    fingertips = 'ho3d'
    option_fields = {'version': 'ho3d_version'}

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor], data_split: str,
                 root: str | Path, input_size: int, mano_path: str | Path | None = None,
                 frame_size: int = 0, version: str = 'v2'):
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        self.version = version
        self.annotation_files = {split: annotation_file(version, name) for split, name in LIST_SPLITS.items()}
        self._rgb_suffix: str | None = None
        self._seg_suffix: str | None = None
        super().__init__(transform, data_split, root, input_size, mano_path, frame_size)

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
        write = (f'write it from the HO3D {self.version} release with python '
                 f'data/HO3D/build_annotations.py --raw {self.root} --version {self.version} '
                 '--mano-path MANO_FOLDER')
        if self.version == 'v3':
            return f'{write}, or point --set ho3d_root=FOLDER at your copy'
        return (f"{write}, or download HandOccNet's preprocessed files (linked from "
                f'https://github.com/namepllet/HandOccNet) into {self.root / "annotations"}, or '
                'point --set ho3d_root=FOLDER at your copy')
