"""DexYCB (setups s0-s3) in the HandOccNet format.

The config's ``dexycb_setup`` picks the files. For s0 HandOccNet published its own; the DexYCB
release converts to any setup with ``data/DEX_YCB/build_annotations.py``, which also writes a
``val`` file (not read here).

Files under the config's ``dexycb_root`` (default ``data/DEX_YCB/data``), as the HandOccNet README lays out::

    annotations/DEX_YCB_s0_train_data.json     HandOccNet's preprocessed files, or build_annotations.py's
    annotations/DEX_YCB_s0_test_data.json      (annotations/DEX_YCB_<SETUP>_<SPLIT>_data.json)
    <SUBJECT>/<SEQUENCE>/<SERIAL>/color_<FRAME:06d>.jpg    images, 640x480 (the DexYCB release)
    <SUBJECT>/<SEQUENCE>/<SERIAL>/labels_<FRAME:06d>.npz   DexYCB's per-frame labels

What the annotation files hold (HandOccNet's ``data_parsing/DEX_YCB.py``, which wrote them from the
DexYCB toolkit's labels):

- ``images``: ``id``, ``file_name`` '<SUBJECT>/<SEQUENCE>/<SERIAL>/color_<FRAME>.jpg' relative to
  the root, ``width`` 640, ``height`` 480. Frames without a hand annotation were left out; ``id``
  is the sample's index in the DexYCB toolkit's split (its ``image_id``), so ids have gaps.
- ``annotations`` (both splits): ``joints_coord_cam`` 21x3 metres (the label's ``joint_3d``,
  OpenCV camera axes, already in the order wrist, thumb 1-4, index 1-4, middle 1-4, ring 1-4,
  little 1-4 = utils.mano.JOINT_NAMES); ``joints_img`` 21x2 pixels (``joint_2d``);
  ``cam_param {focal, princpt}`` of the colour camera; ``hand_type`` 'right' or 'left';
  ``mano_param {pose: 48, shape: 10}``: DexYCB stores 45 PCA coefficients, which HandOccNet turned
  into the full flat 48-value axis-angle pose (global rotation in the camera frame, fingers
  relative to the hands_mean of that side's MANO model, flat_hand_mean=False) using the
  components of the hand's own side; shape is the subject's calibrated betas. No translation.

Left hands are mirrored to right hands at training and at test (image, 2D joints, 3D joints,
MANO pose (a, b, c) -> (a, -b, -c)), as the reference does; test items keep the ground truth in
the original frame with ``meta_info['flip'] = 1``. Test boxes come from the GT 2D joints, as in the
reference (the whole image where that box is outside it).

Segmentation: ``labels_<FRAME>.npz`` holds ``seg`` (480x640 uint8): 0 background, the YCB class
id 1-21 of each object (the sequence's ``ycb_ids``), 255 the hand (DexYCB toolkit,
``dex_ycb_toolkit/coco_eval.py``). Mapped here to 0 background, 2 object, 1 hand.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dataset import SPLITS, HandObjectDataset
from errors import UserError

DEXYCB_HAND = 255
SETUPS = ('s0', 's1', 's2', 's3')


def annotation_file(setup: str, split: str) -> str:
    """The annotation file of a setup ('s0'-'s3') and split ('train', 'val', 'test'), relative to
    the root (HandOccNet's names)."""
    return f'annotations/DEX_YCB_{setup}_{split}_data.json'


class DEX_YCB(HandObjectDataset):  # noqa: N801  (the reference's class name)
    """DexYCB in HandOccNet's annotation format, one setup's train and test splits."""

    root_field = 'dexycb_root'
    mask_location = 'labels_NNNNNN.npz beside each color_NNNNNN.jpg'
    option_fields = {'setup': 'dexycb_setup'}

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor], data_split: str,
                 root: str | Path, input_size: int, mano_path: str | Path | None = None,
                 frame_size: int = 0, setup: str = 's0'):
        if setup not in SETUPS:
            raise ValueError(f"setup must be one of {', '.join(SETUPS)}, got {setup!r}")
        self.setup = setup
        self.annotation_files = {split: annotation_file(setup, split) for split in SPLITS}
        super().__init__(transform, data_split, root, input_size, mano_path, frame_size)

    def image_path(self, img: dict) -> Path:
        return self.root / img['file_name']

    def mask_path(self, img: dict, ann: dict) -> Path | None:
        name = Path(img['file_name'])
        if not name.name.startswith('color_'):
            return None
        return self.root / name.parent / (name.stem.replace('color_', 'labels_', 1) + '.npz')

    def read_mask(self, path: Path) -> np.ndarray:
        try:
            with np.load(path) as label:
                seg = np.asarray(label['seg']).squeeze()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"label file {path} cannot be read or has no 'seg' map ({err}); "
                            're-extract it from the DexYCB release') from None
        return np.where(seg == DEXYCB_HAND, 1, np.where(seg > 0, 2, 0)).astype(np.uint8)

    def missing_annotation_hint(self) -> str:
        write = ('write it from the DexYCB release with python data/DEX_YCB/build_annotations.py '
                 f'--raw {self.root} --setup {self.setup} --mano-path MANO_FOLDER')
        if self.setup != 's0':
            return f'{write}, or point --set dexycb_root=FOLDER at your copy'
        return (f"{write}, or download HandOccNet's preprocessed s0 files (linked from "
                f'https://github.com/namepllet/HandOccNet) into {self.root / "annotations"}, or '
                'point --set dexycb_root=FOLDER at your copy')
