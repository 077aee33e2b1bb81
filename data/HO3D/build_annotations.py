"""Write the HandOccNet-format annotation files of HO3D v2 or v3 from the HO3D release.

    python data/HO3D/build_annotations.py --raw data/HO3D/data --version v3 --mano-path common/utils/manopth/mano/models

Reads ``<raw>/train.txt`` and ``<raw>/evaluation.txt`` (one ``SEQ/FRAME`` per line) and each
listed frame's ``<raw>/<split>/<SEQ>/meta/<FRAME>.pkl`` (Python-2 pickles of numpy arrays, read
without chumpy), and writes under ``--out`` (default ``<raw>/annotations``, where the loader
looks) ``HO3D_train_data.json`` and ``HO3D_evaluation_data.json`` (v2) or
``HO3D_v3_train_data.json`` and ``HO3D_v3_evaluation_data.json`` (v3), in the format of
HandOccNet's files (its first commit's ``data_parsing/HO3D.py``; data/HO3D/HO3D.py describes it):

- one entry per list line, in list order; image id = the line's index; ``file_name``
  ``SEQ/rgb/FRAME.png`` (v2) or ``.jpg`` (v3), relative to the split folder; the image's size;
- train: ``joints_coord_cam`` = ``handJoints3D`` times (1, -1, -1) (HO3D's OpenGL camera axes to
  OpenCV's) in the project's joint order; ``cam_param`` from ``camMat``; ``mano_param.pose`` =
  ``handPose`` with the global rotation turned into OpenCV axes (diag(1, -1, -1) R) and the right
  hand's MANO ``hands_mean`` taken from the 45 finger values (HO3D stores them absolute);
  ``mano_param.shape`` = ``handBeta``. v3 frames without a hand annotation (None) are skipped;
- evaluation: ``root_joint_cam`` (the wrist, flipped likewise), ``bbox`` x, y, w, h from
  ``handBoundingBox`` x1, y1, x2, y2, and ``cam_param``; every listed frame is kept, since the
  challenge scores the list in its order.

Needs ``MANO_RIGHT.pkl`` (its ``hands_mean``) in ``--mano-path``. Prints the counts (written,
skipped and why) and the time per frame.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import logging  # noqa: E402
import pickle  # noqa: E402
from typing import Iterator  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from tqdm import tqdm  # noqa: E402

from errors import UserError, run_cli  # noqa: E402
from HO3D.HO3D import EVALUATION_SIZES, VERSIONS, annotation_file  # noqa: E402
from logger import setup_logging  # noqa: E402
from raw_release import Counts, cam_param, mano_model, metres, output_path, pixels, write_annotation_file  # noqa: E402
from utils.mano import NUM_JOINTS  # noqa: E402
from utils.submission import HO3D_TO_CODE, OPENGL_FLIP  # noqa: E402

log = logging.getLogger('interacthand')

LISTS = ('train', 'evaluation')
IMAGE_SUFFIX = {'v2': '.png', 'v3': '.jpg'}
NO_HAND = 'without a hand annotation'


class _MetaUnpickler(pickle.Unpickler):
    """Builds numpy arrays, numbers, strings and plain containers only (HO3D's meta files hold
    nothing else); any other class a pickle names is refused."""
    _SAFE = {('copy_reg', '_reconstructor'), ('copyreg', '_reconstructor'), ('__builtin__', 'object'),
             ('builtins', 'object'), ('_codecs', 'encode')}

    def find_class(self, module: str, name: str):
        if module.startswith('numpy.core.') and hasattr(np, '_core'):   # pickles from before numpy 2
            module = 'numpy._core.' + module[len('numpy.core.'):]
        if module.split('.')[0] == 'numpy' or (module, name) in self._SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'it names {module}.{name}, which an HO3D meta file never holds')


def read_list(raw: Path, name: str) -> list[tuple[str, str]]:
    """``<raw>/<name>.txt`` -> its (sequence, frame) pairs in order (blank lines ignored)."""
    path = raw / f'{name}.txt'
    if not path.is_file():
        raise UserError(f'the frame list {path} does not exist; --raw must be the HO3D release '
                        'folder, the one holding train.txt, evaluation.txt, train/ and evaluation/')
    frames = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        seq, sep, frame = line.strip().partition('/')
        if not (sep and seq and frame) or '/' in frame:
            raise UserError(f'{path}, line {number}: {line.strip()!r} is not SEQUENCE/FRAME; use '
                            'the list file of the HO3D release')
        frames.append((seq, frame))
    return frames


def load_meta(path: Path, frame: str) -> dict:
    """The meta pickle of a frame (``SEQ/FRAME``) as a dict; a missing or unreadable file is a
    UserError naming it and the frame."""
    if not path.is_file():
        raise UserError(f'the meta file {path} of frame {frame} does not exist; extract the full '
                        'HO3D release (each sequence has a meta/ folder)')
    try:
        with open(path, 'rb') as fh:
            meta = _MetaUnpickler(fh, encoding='latin1').load()
    except Exception as err:  # any failure to unpickle means a damaged or foreign file
        raise UserError(f'the meta file {path} of frame {frame} cannot be read ({err}); extract '
                        'it again from the HO3D release') from None
    if not isinstance(meta, dict):
        raise UserError(f'the meta file {path} of frame {frame} holds a {type(meta).__name__}, not '
                        "HO3D's dict of annotations; extract it again from the HO3D release")
    return meta


def meta_array(meta: dict, key: str, sizes: tuple[int, ...], path: Path) -> np.ndarray | None:
    """``meta[key]`` as a flat float64 array of one of ``sizes`` numbers, or None where HO3D
    stores None (v3's frames without annotation); a missing key or another size is a UserError."""
    if key not in meta:
        raise UserError(f"the meta file {path} has no '{key}'; use the meta files of the HO3D release")
    if meta[key] is None:
        return None
    try:
        value = np.asarray(meta[key], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        value = None
    if value is None or value.size not in sizes:
        raise UserError(f"the meta file {path} has '{key}' of the wrong size (expected "
                        f"{' or '.join(map(str, sizes))} numbers); use the meta files of the HO3D release")
    return value


def image_size(path: Path, frame: str, version: str) -> tuple[int, int]:
    """(width, height) of a frame's image, from its header."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        other = next(v for v in VERSIONS if v != version)
        raise UserError(f'the image {path} of frame {frame} does not exist; extract the rgb/ folders '
                        f'of the HO3D release ({other} stores {IMAGE_SUFFIX[other]} images: is '
                        f'--version {version} right?)') from None
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f'the image {path} of frame {frame} cannot be read ({err}); extract it again '
                        'from the HO3D release') from None


def root_to_opencv(rotvec: np.ndarray) -> np.ndarray:
    """(3,) axis-angle global rotation in OpenGL camera axes -> (3,) in OpenCV camera axes:
    R -> diag(1, -1, -1) R (the axes change after the rotation)."""
    rot, _ = cv2.Rodrigues(rotvec.reshape(3, 1))
    return cv2.Rodrigues(np.diag(OPENGL_FLIP) @ rot)[0].reshape(3)


def _camera(meta: dict, path: Path) -> dict:
    cam = meta_array(meta, 'camMat', (9,), path)
    if cam is None:
        raise UserError(f"the meta file {path} has no camera ('camMat' is None); use the meta files "
                        'of the HO3D release')
    k = cam.reshape(3, 3)
    return cam_param((k[0, 0], k[1, 1]), (k[0, 2], k[1, 2]))


def train_annotation(meta: dict, path: Path, hands_mean: np.ndarray) -> dict | None:
    """A training frame's annotation (without ids), or None when its hand is not annotated."""
    joints = meta_array(meta, 'handJoints3D', (3 * NUM_JOINTS,), path)
    pose = meta_array(meta, 'handPose', (48,), path)
    beta = meta_array(meta, 'handBeta', (10,), path)
    if joints is None or pose is None or beta is None:
        return None
    joints_cam = (joints.reshape(NUM_JOINTS, 3) * OPENGL_FLIP)[HO3D_TO_CODE]
    pose = np.concatenate([root_to_opencv(pose[:3]), pose[3:] - hands_mean])
    return {'joints_coord_cam': metres(joints_cam), 'cam_param': _camera(meta, path),
            'mano_param': {'pose': metres(pose), 'shape': metres(beta)}}


def evaluation_annotation(meta: dict, path: Path, frame: str) -> dict:
    """An evaluation frame's annotation (without ids): wrist, hand box, camera."""
    root = meta_array(meta, 'handJoints3D', (3, 3 * NUM_JOINTS), path)
    box = meta_array(meta, 'handBoundingBox', (4,), path)
    if root is None or box is None:
        raise UserError(f'the meta file {path} of evaluation frame {frame} has no hand position or '
                        'box, which every evaluation frame needs; use the meta files of the HO3D release')
    x1, y1, x2, y2 = box
    return {'root_joint_cam': metres(root[:3] * OPENGL_FLIP), 'cam_param': _camera(meta, path),
            'bbox': pixels([x1, y1, x2 - x1, y2 - y1])}


def records(raw: Path, version: str, name: str, frames: list[tuple[str, str]],
            hands_mean: np.ndarray, counts: Counts) -> Iterator[tuple[dict, dict]]:
    """(image, annotation) records of one list, in list order; skipped frames are counted."""
    split_dir = raw / name
    for index, (seq, frame) in enumerate(tqdm(frames, desc=f'HO3D {version} {name}', unit='frame',
                                              dynamic_ncols=True, leave=False)):
        counts.seen += 1
        path = split_dir / seq / 'meta' / f'{frame}.pkl'
        meta = load_meta(path, f'{seq}/{frame}')
        if name == 'train':
            ann = train_annotation(meta, path, hands_mean)
            if ann is None:
                counts.skipped[NO_HAND] += 1
                continue
        else:
            ann = evaluation_annotation(meta, path, f'{seq}/{frame}')
        file_name = f'{seq}/rgb/{frame}{IMAGE_SUFFIX[version]}'
        width, height = image_size(split_dir / file_name, f'{seq}/{frame}', version)
        yield ({'id': index, 'file_name': file_name, 'width': width, 'height': height},
               {'id': index, 'image_id': index, **ann})


def convert(raw: Path, version: str, mano_path: Path, out: Path) -> list[tuple[Counts, Path]]:
    """Write both annotation files of ``version`` under ``out``; returns each list's counts and file."""
    if not raw.is_dir():
        raise UserError(f'--raw {raw} is not a folder; give the HO3D release folder (the one holding '
                        'train.txt and evaluation.txt)')
    hands_mean = mano_model(mano_path, 'right', 'HO3D', "the right hand's hands_mean")['hands_mean']
    lists = {name: read_list(raw, name) for name in LISTS}   # both checked before any long work
    done = []
    for name, frames in lists.items():
        path = output_path(out, Path(annotation_file(version, name)).name)
        counts = Counts(f'HO3D {version} {name}')
        write_annotation_file(path, records(raw, version, name, frames, hands_mean, counts), counts)
        done.append((counts, path))
    evaluation = done[LISTS.index('evaluation')][0]
    if evaluation.written != EVALUATION_SIZES[version]:
        log.warning(f'the {version} evaluation list has {evaluation.written} frames, but the HO3D '
                    f'{version} challenge scores {EVALUATION_SIZES[version]}: a submission from it '
                    'will be refused (is --version right, and the evaluation.txt complete?)')
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--raw', type=Path, required=True, help='the HO3D release folder (train.txt, '
                   'evaluation.txt, train/, evaluation/)')
    p.add_argument('--version', required=True, choices=VERSIONS, help='which release it is')
    p.add_argument('--mano-path', type=Path, required=True,
                   help='the folder holding MANO_RIGHT.pkl (from https://mano.is.tue.mpg.de)')
    p.add_argument('--out', type=Path, help='where to write the files (default RAW/annotations)')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[tuple[Counts, Path]]:
    args = parse_args(argv)
    setup_logging()
    done = convert(args.raw, args.version, args.mano_path,
                   args.out if args.out is not None else args.raw / 'annotations')
    for counts, path in done:
        print(counts.summary(path))
    return done


if __name__ == '__main__':
    run_cli(main)
