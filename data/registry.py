"""Dataset names -> loader classes (no eval of names): ``build_dataset('HO3D', transform, 'train', conf)``."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from config import DATASETS, Config
from dataset import HandObjectDataset
from DEX_YCB.DEX_YCB import DEX_YCB
from errors import UserError
from HO3D.HO3D import HO3D
from SYNTH.SYNTH import SYNTH

log = logging.getLogger('interacthand')

DATASET_CLASSES: dict[str, type[HandObjectDataset]] = {'HO3D': HO3D, 'DEX_YCB': DEX_YCB, 'SYNTH': SYNTH}


def build_dataset(name: str, transform: Callable[[np.ndarray], torch.Tensor],
                  data_split: str, conf: Config) -> HandObjectDataset:
    """The dataset called ``name`` (one of config.DATASETS) for 'train' or 'test', with the
    folder, crop size, MANO folder, whole-frame size for the hand localiser (training items) and
    dataset options (``option_fields``, e.g. ``ho3d_version``) of ``conf``. A training set whose joints use other fingertips than ``conf.fingertips`` is
    warned about: the joint loss would pull the predicted tips to the wrong vertices."""
    if name not in DATASET_CLASSES:
        raise UserError(f"unknown dataset '{name}'; allowed names: {', '.join(DATASETS)}")
    cls = DATASET_CLASSES[name]
    if data_split == 'train' and conf.fingertips != cls.fingertips:
        log.warning(f"{name}'s joints use the '{cls.fingertips}' fingertips but fingertips="
                    f"{conf.fingertips} is set; the network learns tips at the wrong vertices "
                    f'(leave fingertips unset to follow the training set)')
    options = {arg: getattr(conf, field) for arg, field in cls.option_fields.items()}
    return cls(transform, data_split, root=getattr(conf, cls.root_field), input_size=conf.input_img_shape[0],
               mano_path=conf.mano_path, frame_size=conf.localiser_size if data_split == 'train' else 0,
               **options)
