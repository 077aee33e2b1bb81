"""What the converters of raw dataset releases share (``data/HO3D/build_annotations.py``,
``data/DEX_YCB/build_annotations.py``): the MANO arrays a conversion needs, streaming a
HandOccNet-format annotation file to disk, and the counts a conversion reports.

The annotation files are the COCO-style JSON of docs/DESIGN.md: ``{"annotations": [...],
"images": [...]}``. They are written record by record (a full DexYCB split holds hundreds of
thousands), into a temporary file renamed over the target at the end, so an interrupted run
leaves no partial file. Numbers are rounded: metres and radians to :data:`DECIMALS_3D` decimals
(0.1 micrometre, 0.1 microradian: far below the annotations' own precision, and posing MANO from
the rounded values moves no joint by more than a few hundredths of a micrometre), pixels to
:data:`DECIMALS_PX`.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import numpy.typing as npt

from errors import UserError
from utils.files import output_file, rounded, write_atomically
from utils.mano import ManoFileError, load_mano_file

DECIMALS_3D = 7
DECIMALS_PX = 4
MANO_SITE = 'https://mano.is.tue.mpg.de'


def metres(x: npt.ArrayLike) -> list:
    """Metres or radians -> nested lists rounded to :data:`DECIMALS_3D` decimals."""
    return rounded(x, DECIMALS_3D)


def pixels(x: npt.ArrayLike) -> list:
    """Pixels -> nested lists rounded to :data:`DECIMALS_PX` decimals."""
    return rounded(x, DECIMALS_PX)


def cam_param(focal: npt.ArrayLike, princpt: npt.ArrayLike) -> dict:
    """The ``cam_param`` record: ``focal`` (fx, fy) and ``princpt`` (cx, cy), pixels."""
    return {'focal': pixels(focal), 'princpt': pixels(princpt)}


def mano_model(folder: Path, side: str, dataset: str, need: str) -> dict[str, np.ndarray]:
    """The arrays of ``folder/MANO_{SIDE}.pkl``, the licensed MANO file: the built-in hand model
    cannot stand in, since the raw poses are defined by MANO's own ``hands_mean`` and PCA
    components. ``need`` says what ``dataset`` uses from it, for the message when it is missing."""
    folder = Path(folder)
    if folder.suffix == '.pkl' or folder.is_file():
        raise UserError(f'--mano-path {folder} is a file; give the folder that holds '
                        'MANO_RIGHT.pkl and MANO_LEFT.pkl')
    path = folder / f'MANO_{side.upper()}.pkl'
    if not path.is_file():
        raise UserError(f'the MANO folder {folder} has no {path.name}, and {dataset} needs {need}; '
                        f'download it from {MANO_SITE} into that folder')
    try:
        return load_mano_file(path)
    except ManoFileError as err:
        raise UserError(f'{err} ({dataset} needs {need})') from None


def output_path(out: Path, name: str) -> Path:
    """``out/name``, its folder created and checked writable before any long work (a
    :class:`UserError` naming ``--out`` otherwise)."""
    return output_file(Path(out) / name, '--out')


@dataclass
class Counts:
    """What a conversion of one list or split did: ``seen`` samples, ``written`` entries and the
    ``skipped`` ones by reason; ``seconds`` of work."""
    name: str
    seen: int = 0
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self, path: Path) -> str:
        """One line: counts, reasons, time per sample and the file written."""
        reasons = ', '.join(f'{n} {why}' for why, n in self.skipped.items()) or 'none'
        per = 1000 * self.seconds / max(self.seen, 1)
        return (f'{self.name}: {self.seen} samples, {self.written} written, skipped: {reasons}; '
                f'{self.seconds:.1f} s ({per:.2f} ms per sample) -> {path}')


def write_annotation_file(path: Path, records: Iterable[tuple[dict, dict]], counts: Counts) -> None:
    """Stream ``(image, annotation)`` records into the annotation file ``path`` (check it first
    with :func:`output_path`), atomically, counting them in ``counts.written`` and timing the
    whole in ``counts.seconds``. The annotations go out as they come; the small image records are
    kept until the end."""
    start = time.perf_counter()

    def write(tmp: Path) -> None:
        images = []
        with open(tmp, 'w') as fh:
            fh.write('{"annotations": [')
            for image, annotation in records:
                fh.write((',\n' if images else '\n') + json.dumps(annotation, separators=(',', ':')))
                images.append(json.dumps(image, separators=(',', ':')))
            fh.write('\n], "images": [\n' + ',\n'.join(images) + '\n]}\n')
        counts.written = len(images)

    write_atomically(path, write)
    counts.seconds = time.perf_counter() - start
