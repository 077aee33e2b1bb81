"""Write the HandOccNet-format annotation files of one DexYCB setup from the DexYCB release.

    python data/DEX_YCB/build_annotations.py --raw data/DEX_YCB/data --setup s0 --mano-path common/utils/manopth/mano/models

Writes ``DEX_YCB_{setup}_{train,val,test}_data.json`` under ``--out`` (default
``<raw>/annotations``, where the loader looks), in the format of HandOccNet's files (its first
commit's ``data_parsing/DEX_YCB.py``; data/DEX_YCB/DEX_YCB.py describes it). The samples and their
order are the DexYCB toolkit's (NVlabs/dex-ycb-toolkit, ``dex_ycb_toolkit/dex_ycb.py``): the
setup's subjects and cameras in the toolkit's fixed order, each subject's sequences sorted by name
(a sequence's index, which the split rules test, is its position among the subject's sorted
folders), then camera, then frame. A sample's image id is its index in that mapping, the
``image_id`` the toolkit's ``hpe_eval.py`` scores, so ids have gaps where frames are skipped.

Per sample (``<SUBJECT>/<SEQUENCE>/<SERIAL>/labels_<FRAME>.npz``): frames without a hand
(``pose_m`` all 0 and ``joint_3d`` all -1) are skipped; ``joints_coord_cam`` = ``joint_3d``
(metres, OpenCV camera axes, the project's joint order), ``joints_img`` = ``joint_2d`` (pixels);
``cam_param`` from ``calibration/intrinsics/<SERIAL>_640x480.yml``; ``mano_param.pose`` = the
global rotation as stored and the 45 PCA coefficients times the PCA components of the hand's own
side (MANO_LEFT.pkl's for left hands), hands_mean not added (the loaders' poses are relative to
it); ``shape`` = the subject's betas (``calibration/mano_<calib>/mano.yml``); ``hand_type`` from
the sequence's ``meta.yml``.

A missing subject folder is left out with a warning (the toolkit itself needs all ten; ids match
its ``image_id`` only when every subject of the split is there). Needs ``MANO_RIGHT.pkl`` and
``MANO_LEFT.pkl`` in ``--mano-path``. Prints the counts (written, skipped and why) and the time
per sample.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import logging  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from DEX_YCB.DEX_YCB import SETUPS, annotation_file  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from logger import setup_logging  # noqa: E402
from raw_release import Counts, cam_param, mano_model, metres, output_path, pixels, write_annotation_file  # noqa: E402
from utils.mano import NUM_JOINTS, SIDES  # noqa: E402

log = logging.getLogger('interacthand')

# The toolkit's fixed orders (dex_ycb_toolkit/dex_ycb.py, _SUBJECTS and _SERIALS).
SUBJECTS = ('20200709-subject-01', '20200813-subject-02', '20200820-subject-03', '20200903-subject-04',
            '20200908-subject-05', '20200918-subject-06', '20200928-subject-07', '20201002-subject-08',
            '20201015-subject-09', '20201022-subject-10')
SERIALS = ('836212060125', '839512060362', '840412060917', '841412060263', '932122060857',
           '932122060861', '932122061900', '932122062010')
NUM_SEQUENCES = 100   # per subject in the release: 20 objects x 5 trials (the toolkit asserts it)
WIDTH, HEIGHT = 640, 480   # the colour images (and the intrinsics file named for them)
SPLIT_NAMES = ('train', 'val', 'test')
NO_HAND = 'without a hand (pose_m all 0, joint_3d all -1)'


@dataclass(frozen=True)
class SplitRule:
    """Which subjects and cameras (indices into SUBJECTS, SERIALS) and which sequence indices
    (0-99 within a subject) make a split."""
    subjects: tuple[int, ...]
    serials: tuple[int, ...]
    sequences: Callable[[int], bool]


_ALL_SUBJECTS, _ALL_SERIALS = tuple(range(10)), tuple(range(8))


def _every(i: int) -> bool:
    return True


# The toolkit's split rules: s0 seen subjects, cameras and objects (every fifth trial held out);
# s1 unseen subjects; s2 unseen cameras; s3 unseen objects (sequence i shows object i // 5).
RULES: dict[str, dict[str, SplitRule]] = {
    's0': {'train': SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, lambda i: i % 5 != 4),
           'val': SplitRule((0, 1), _ALL_SERIALS, lambda i: i % 5 == 4),
           'test': SplitRule(tuple(range(2, 10)), _ALL_SERIALS, lambda i: i % 5 == 4)},
    's1': {'train': SplitRule((0, 1, 2, 3, 4, 5, 9), _ALL_SERIALS, _every),
           'val': SplitRule((6,), _ALL_SERIALS, _every),
           'test': SplitRule((7, 8), _ALL_SERIALS, _every)},
    's2': {'train': SplitRule(_ALL_SUBJECTS, tuple(range(6)), _every),
           'val': SplitRule(_ALL_SUBJECTS, (6,), _every),
           'test': SplitRule(_ALL_SUBJECTS, (7,), _every)},
    's3': {'train': SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, lambda i: i // 5 not in (3, 7, 11, 15, 19)),
           'val': SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, lambda i: i // 5 in (3, 19)),
           'test': SplitRule(_ALL_SUBJECTS, _ALL_SERIALS, lambda i: i // 5 in (7, 11, 15))},
}


@dataclass
class Sequence:
    """One recorded sequence: ``name`` SUBJECT/SEQUENCE, its frame count, hand side and betas (10,)."""
    name: str
    num_frames: int
    side: str
    betas: np.ndarray


def read_yaml(path: Path, what: str) -> dict:
    """A YAML file of the release as a dict; missing or unreadable is a UserError naming it."""
    if not path.is_file():
        raise UserError(f'the {what} {path} does not exist; extract the full DexYCB release '
                        '(the subject folders and calibration/)')
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f'the {what} {path} cannot be read ({err}); extract it again from the '
                        'DexYCB release') from None
    if not isinstance(data, dict):
        raise UserError(f'the {what} {path} is not a YAML mapping; extract it again from the DexYCB release')
    return data


def _entry(data: dict, key: str, path: Path, what: str):
    if key not in data:
        raise UserError(f"the {what} {path} has no '{key}'; extract it again from the DexYCB release")
    return data[key]


def load_labels(path: Path, sample: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sample's ``pose_m`` (51,), ``joint_3d`` (21, 3) metres and ``joint_2d`` (21, 2) pixels;
    a missing or unreadable file is a UserError naming it and the sample."""
    if not path.is_file():
        raise UserError(f'the label file {path} of {sample} does not exist; extract the full DexYCB '
                        'release')
    try:
        with np.load(path) as labels:
            arrays = [np.asarray(labels[k], dtype=np.float64) for k in ('pose_m', 'joint_3d', 'joint_2d')]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f'the label file {path} of {sample} cannot be read ({err}); extract it again '
                        'from the DexYCB release') from None
    sizes = (51, 3 * NUM_JOINTS, 2 * NUM_JOINTS)
    if any(a.size != n for a, n in zip(arrays, sizes)):
        raise UserError(f'the label file {path} of {sample} has pose_m, joint_3d or joint_2d of the '
                        'wrong size; extract it again from the DexYCB release')
    pose_m, joint_3d, joint_2d = arrays
    return pose_m.reshape(51), joint_3d.reshape(NUM_JOINTS, 3), joint_2d.reshape(NUM_JOINTS, 2)


class Release:
    """The DexYCB release folder ``raw``, its calibration files read once each."""

    def __init__(self, raw: Path):
        if not (raw / 'calibration').is_dir():
            raise UserError(f'{raw} has no calibration/ folder; --raw must be the DexYCB release '
                            'folder (the one holding calibration/ and the subject folders)')
        if not any((raw / s).is_dir() for s in SUBJECTS):
            raise UserError(f'{raw} holds none of the DexYCB subject folders ({SUBJECTS[0]} ...); '
                            'extract the subjects of the release there')
        self.raw = raw
        self._cameras: dict[str, dict] = {}
        self._betas: dict[str, np.ndarray] = {}
        self._warned: set[str] = set()

    def camera(self, serial: str) -> dict:
        """The ``cam_param`` of a camera's colour images."""
        if serial not in self._cameras:
            what = 'intrinsics file'
            path = self.raw / 'calibration' / 'intrinsics' / f'{serial}_{WIDTH}x{HEIGHT}.yml'
            color = _entry(read_yaml(path, what), 'color', path, what)
            try:
                fx, fy, cx, cy = (float(color[k]) for k in ('fx', 'fy', 'ppx', 'ppy'))
            except (TypeError, KeyError, ValueError):
                raise UserError(f"the intrinsics file {path} lacks the colour camera's fx, fy, ppx, ppy; "
                                'extract it again from the DexYCB release') from None
            self._cameras[serial] = cam_param((fx, fy), (cx, cy))
        return self._cameras[serial]

    def betas(self, calib: str) -> np.ndarray:
        """(10,) shape parameters of a MANO calibration (a subject's hand)."""
        if calib not in self._betas:
            what = 'MANO calibration file'
            path = self.raw / 'calibration' / f'mano_{calib}' / 'mano.yml'
            betas = np.asarray(_entry(read_yaml(path, what), 'betas', path, what), dtype=np.float64)
            if betas.shape != (10,):
                raise UserError(f'the MANO calibration file {path} has {betas.size} betas, not 10; '
                                'extract it again from the DexYCB release')
            self._betas[calib] = betas
        return self._betas[calib]

    def sequence(self, name: str) -> Sequence:
        """A sequence (SUBJECT/SEQUENCE) from its ``meta.yml``."""
        what = 'sequence file'
        path = self.raw / name / 'meta.yml'
        meta = read_yaml(path, what)
        sides, calibs = (_entry(meta, k, path, what) for k in ('mano_sides', 'mano_calib'))
        frames = _entry(meta, 'num_frames', path, what)
        if not (isinstance(sides, list) and sides and sides[0] in SIDES and isinstance(calibs, list)
                and calibs and isinstance(frames, int) and frames >= 0):
            raise UserError(f"the sequence file {path} has no usable mano_sides, mano_calib or "
                            'num_frames; extract it again from the DexYCB release')
        return Sequence(name, frames, sides[0], self.betas(str(calibs[0])))

    def sequences(self, rule: SplitRule, label: str) -> list[Sequence]:
        """The sequences of a split (``label`` names it in warnings), in the toolkit's order;
        missing subject folders are left out with a warning."""
        missing = [SUBJECTS[s] for s in rule.subjects if not (self.raw / SUBJECTS[s]).is_dir()]
        if missing:
            log.warning(f'{label}: {len(missing)} of its {len(rule.subjects)} subject folders are not in '
                        f'{self.raw} ({", ".join(missing)}); their samples are left out, and image ids '
                        "after a missing subject no longer match the toolkit's")
        chosen = []
        for s in rule.subjects:
            folder = self.raw / SUBJECTS[s]
            if SUBJECTS[s] in missing:
                continue
            names = sorted(p.name for p in folder.iterdir() if p.is_dir())
            if len(names) != NUM_SEQUENCES and folder.name not in self._warned:
                log.warning(f'{folder} has {len(names)} sequence folders, not {NUM_SEQUENCES}: the split '
                            "rules, which go by a sequence's index, may not pick the toolkit's sequences")
                self._warned.add(folder.name)
            chosen += [self.sequence(f'{SUBJECTS[s]}/{n}') for i, n in enumerate(names[:NUM_SEQUENCES])
                       if rule.sequences(i)]
        return chosen


def records(release: Release, rule: SplitRule, components: dict[str, np.ndarray], label: str,
            counts: Counts) -> Iterator[tuple[dict, dict]]:
    """(image, annotation) records of one split, in the toolkit's order; image id = the sample's
    index in the split's mapping. Samples without a hand are counted and skipped."""
    seqs = release.sequences(rule, label)
    serials = [SERIALS[c] for c in rule.serials]
    total = sum(q.num_frames for q in seqs) * len(serials)
    with tqdm(total=total, desc=label, unit='sample', dynamic_ncols=True, leave=False) as bar:
        for seq in seqs:
            for serial in serials:
                cam = release.camera(serial)
                for frame in range(seq.num_frames):
                    index = counts.seen
                    counts.seen += 1
                    bar.update()
                    folder = f'{seq.name}/{serial}'
                    pose_m, joint_3d, joint_2d = load_labels(release.raw / folder / f'labels_{frame:06d}.npz',
                                                             f'frame {frame} of {folder}')
                    if np.all(pose_m == 0) and np.all(joint_3d == -1):
                        counts.skipped[NO_HAND] += 1
                        continue
                    pose = np.concatenate([pose_m[:3], pose_m[3:48] @ components[seq.side]])
                    yield ({'id': index, 'file_name': f'{folder}/color_{frame:06d}.jpg',
                            'width': WIDTH, 'height': HEIGHT},
                           {'id': index, 'image_id': index, 'joints_coord_cam': metres(joint_3d),
                            'joints_img': pixels(joint_2d), 'cam_param': cam,
                            'mano_param': {'pose': metres(pose), 'shape': metres(seq.betas)},
                            'hand_type': seq.side})


def convert(raw: Path, setup: str, mano_path: Path, out: Path) -> list[tuple[Counts, Path]]:
    """Write the train, val and test files of ``setup`` under ``out``; returns each split's counts
    and file."""
    if not raw.is_dir():
        raise UserError(f'--raw {raw} is not a folder; give the DexYCB release folder (the one '
                        'holding calibration/ and the subject folders)')
    components = {side: mano_model(mano_path, side, 'DexYCB', "both hands' PCA components "
                                   '(hands_components)')['hands_components'] for side in SIDES}
    release = Release(raw)
    done = []
    for split in SPLIT_NAMES:
        path = output_path(out, Path(annotation_file(setup, split)).name)
        counts = Counts(f'DexYCB {setup} {split}')
        write_annotation_file(path, records(release, RULES[setup][split], components, counts.name, counts),
                              counts)
        done.append((counts, path))
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--raw', type=Path, required=True, help='the DexYCB release folder (calibration/ '
                   'and the subject folders)')
    p.add_argument('--setup', required=True, choices=SETUPS, help="the toolkit's setup: s0 (HandOccNet's), "
                   's1 unseen subjects, s2 unseen cameras, s3 unseen objects')
    p.add_argument('--mano-path', type=Path, required=True, help='the folder holding MANO_RIGHT.pkl and '
                   'MANO_LEFT.pkl (from https://mano.is.tue.mpg.de)')
    p.add_argument('--out', type=Path, help='where to write the files (default RAW/annotations)')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[tuple[Counts, Path]]:
    args = parse_args(argv)
    setup_logging()
    done = convert(args.raw, args.setup, args.mano_path,
                   args.out if args.out is not None else args.raw / 'annotations')
    for counts, path in done:
        print(counts.summary(path))
    return done


if __name__ == '__main__':
    run_cli(main)
