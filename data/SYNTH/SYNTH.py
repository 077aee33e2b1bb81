"""SYNTH: the built-in synthetic hand-object dataset, written by ``data/SYNTH/generate.py``.

Files under the config's ``synth_root`` (default ``data/SYNTH/data``)::

    annotations/SYNTH_train_data.json         the HandOccNet-format COCO schema (docs/DESIGN.md)
    annotations/SYNTH_evaluation_data.json
    train/rgb/<ID>.jpg   train/seg/<ID>.png   evaluation/rgb/<ID>.jpg   evaluation/seg/<ID>.png

Both splits carry full ground truth: ``joints_coord_cam`` (absolute, metres, camera axes,
utils.mano.JOINT_NAMES order), ``joints_img``, ``cam_param``, ``mano_param {pose, shape, trans}``
(relative to hands_mean, camera frame), ``hand_type`` 'right', ``bbox``, ``root_joint_cam``,
``occlusion`` (hidden hand pixels / all hand pixels) and ``seg_file_name``, a uint8 PNG of the
image size with 0 background, 1 hand, 2 object (paths relative to the root). The test split
reads the evaluation file; its crops come from the GT joints, like training crops.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dataset import HandObjectDataset
from errors import UserError
from utils.preprocessing import IGNORE_LABEL, OBJECT


class SYNTH(HandObjectDataset):
    """The synthetic dataset; ground truth in both splits."""

    root_field = 'synth_root'
    annotation_files = {'train': 'annotations/SYNTH_train_data.json',
                        'test': 'annotations/SYNTH_evaluation_data.json'}
    mask_location = 'the seg_file_name of each annotation'

    def image_path(self, img: dict) -> Path:
        return self.root / img['file_name']

    def mask_path(self, img: dict, ann: dict) -> Path | None:
        name = ann.get('seg_file_name')
        return self.root / name if name else None

    def read_mask(self, path: Path) -> np.ndarray:
        labels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if labels is None:
            raise UserError(f'segmentation map {path} cannot be read; generate SYNTH again '
                            '(python data/SYNTH/generate.py)')
        labels[labels > OBJECT] = IGNORE_LABEL
        return labels

    def missing_annotation_hint(self) -> str:
        return ('generate the synthetic dataset first: run `python data/SYNTH/generate.py` or '
                '`make quickstart` (or point --set synth_root=FOLDER at a generated copy)')
