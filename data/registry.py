"""Dataset names -> loader classes (no eval of names): ``build_dataset('HO3D', transform, 'train', conf)``."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from config import DATASETS, Config
from dataset import HandObjectDataset
from DEX_YCB.DEX_YCB import DEX_YCB
from errors import UserError
from HO3D.HO3D import HO3D
from SYNTH.SYNTH import SYNTH

DATASET_CLASSES: dict[str, type[HandObjectDataset]] = {'HO3D': HO3D, 'DEX_YCB': DEX_YCB, 'SYNTH': SYNTH}


def build_dataset(name: str, transform: Callable[[np.ndarray], torch.Tensor],
                  data_split: str, conf: Config) -> HandObjectDataset:
    """The dataset called ``name`` (one of config.DATASETS) for 'train' or 'test', with the
    folder, crop size and MANO folder of ``conf``."""
    if name not in DATASET_CLASSES:
        raise UserError(f"unknown dataset '{name}'; allowed names: {', '.join(DATASETS)}")
    cls = DATASET_CLASSES[name]
    return cls(transform, data_split, root=getattr(conf, cls.root_field),
               input_size=conf.input_img_shape[0], mano_path=conf.mano_path)
