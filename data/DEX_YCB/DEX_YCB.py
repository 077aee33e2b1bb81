"""DexYCB (setup s0) in the HandOccNet format.

Files under the config's ``dexycb_root`` (default ``data/DEX_YCB/data``), as the HandOccNet README lays out::

    annotations/DEX_YCB_s0_train_data.json     HandOccNet's preprocessed annotation files
    annotations/DEX_YCB_s0_test_data.json
    <SUBJECT>/<SEQUENCE>/<SERIAL>/color_<FRAME:06d>.jpg    images, 640x480 (the DexYCB release)
    <SUBJECT>/<SEQUENCE>/<SERIAL>/labels_<FRAME:06d>.npz   DexYCB's per-frame labels

What the annotation files hold (HandOccNet's ``data_parsing/DEX_YCB.py``, which wrote them from the
DexYCB toolkit's labels):

- ``images``: ``id``, ``file_name`` '<SUBJECT>/<SEQUENCE>/<SERIAL>/color_<FRAME>.jpg' relative to
  the root, ``width`` 640, ``height`` 480. Frames without a hand annotation were left out.
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

import numpy as np

from dataset import HandObjectDataset
from errors import UserError

DEXYCB_HAND = 255


class DEX_YCB(HandObjectDataset):  # noqa: N801  (the reference's class name)
    """DexYCB s0 in HandOccNet's annotation format."""

    root_field = 'dexycb_root'
    annotation_files = {'train': 'annotations/DEX_YCB_s0_train_data.json',
                        'test': 'annotations/DEX_YCB_s0_test_data.json'}
    mask_location = 'labels_NNNNNN.npz beside each color_NNNNNN.jpg'

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
        return ("download HandOccNet's preprocessed DexYCB annotation files "
                '(DEX_YCB_s0_train_data.json, DEX_YCB_s0_test_data.json, linked from '
                f'https://github.com/namepllet/HandOccNet) into {self.root / "annotations"}, or '
                'point --set dexycb_root=FOLDER at your copy')
