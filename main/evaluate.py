"""Score a HO3D-challenge prediction file against ground truth held by the user.

    python main/evaluate.py --pred output/result/pred80.json \\
        --gt-joints evaluation_xyz.json --gt-verts evaluation_verts.json [--out metrics.json]

All files are in the challenge's format (see ``utils/submission.py``); the prediction may also be
the ``.zip`` made for upload. Prints MPJPE (of the positions as given, like the challenge),
PA-MPJPE, PA-MPVPE, ST-MPJPE (mm), F@5/15 mm of the aligned mesh and the PCK AUC of the aligned
joints over 0-50 mm, as defined in ``utils/metrics.py``, and writes them with the keys of
``metrics.SUMMARY_KEYS`` when ``--out`` is given.
"""
import bootstrap  # noqa: F401  (puts common/, main/, data/ on the path)

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from errors import UserError, run_cli
from utils.files import output_file
from utils.metrics import HandMetrics
from utils.submission import read_gt, read_submission

CHUNK = 512  # samples per metrics update; a progress bar appears when there is more than one chunk
ROWS = (('mpjpe', 'MPJPE', 'mm'), ('pa_mpjpe', 'PA-MPJPE', 'mm'), ('pa_mpvpe', 'PA-MPVPE', 'mm'),
        ('st_mpjpe', 'ST-MPJPE', 'mm'), ('f5', 'F@5mm (aligned)', ''),
        ('f15', 'F@15mm (aligned)', ''), ('auc', 'AUC PCK 0-50mm (aligned)', ''))


def evaluate(pred: Path, gt_joints: Path, gt_verts: Path) -> tuple[dict[str, float], int]:
    """Metrics of the prediction file against the ground-truth files, and the number of samples."""
    joints_pred, verts_pred = read_submission(pred)
    joints_gt, verts_gt = read_gt(gt_joints, gt_verts)
    n = len(joints_gt)
    if len(joints_pred) != n:
        raise UserError(f'{pred} has {len(joints_pred)} predictions but {gt_joints} has {n} '
                        f'ground-truth entries; predict every image of the split, in order.')
    ratio = _size_ratio(joints_pred, joints_gt)
    if not 0.1 < ratio < 10:
        print(f'warning: the hands in {pred} are {ratio:.3g} times the size of those in {gt_joints}; '
              'both should be in metres (a factor near 1000 means millimetres). PA-MPJPE, PA-MPVPE '
              'and the aligned F-scores remove the scale, the other metrics do not.', file=sys.stderr)
    metrics = HandMetrics()
    with tqdm(total=n, unit='sample', desc='evaluate', disable=n <= CHUNK) as bar:
        for start in range(0, n, CHUNK):
            part = slice(start, start + CHUNK)
            metrics.update(joints_pred[part], joints_gt[part], verts_pred[part], verts_gt[part])
            bar.update(len(joints_gt[part]))
    return metrics.summary(), n


def _size_ratio(joints_pred: np.ndarray, joints_gt: np.ndarray) -> float:
    """Median over samples of the predicted hand's size over the true one's (each: the mean
    distance of the joints from their centroid); (N, 21, 3) each."""
    def size(j: np.ndarray) -> np.ndarray:
        return np.linalg.norm(j - j.mean(axis=1, keepdims=True), axis=2).mean(axis=1)
    return float(np.median(size(joints_pred) / np.maximum(size(joints_gt), 1e-12)))


def format_table(summary: dict[str, float], n: int) -> str:
    """A small text table of ``summary`` (errors in mm, F-scores and AUC 0..1)."""
    width = max(len(label) for _, label, _ in ROWS)
    lines = [f'{"metric":<{width}}  value   ({n} samples)']
    for key, label, unit in ROWS:
        value = f'{summary[key]:7.2f} {unit}' if unit else f'{summary[key]:7.3f}'
        lines.append(f'{label:<{width}}  {value}')
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description='Compute HO3D-challenge metrics of a prediction file (pred*.json or .zip) '
                    'against ground truth in the challenge format (HO3D joint order, OpenGL axes, '
                    'metres).')
    parser.add_argument('--pred', required=True, type=Path,
                        help='prediction file [joints_list, verts_list], .json or .zip')
    parser.add_argument('--gt-joints', required=True, type=Path,
                        help='ground-truth joints: JSON list of 21x3 arrays '
                             '(e.g. evaluation_xyz.json)')
    parser.add_argument('--gt-verts', required=True, type=Path,
                        help='ground-truth vertices: JSON list of 778x3 arrays '
                             '(e.g. evaluation_verts.json)')
    parser.add_argument('--out', type=Path, help='write the metrics to this JSON file')
    args = parser.parse_args(argv)
    if args.out is not None:
        output_file(args.out, '--out')

    print(f'reading {args.pred}, {args.gt_joints} and {args.gt_verts} ...', file=sys.stderr)
    summary, n = evaluate(args.pred, args.gt_joints, args.gt_verts)
    print(format_table(summary, n))
    if args.out is not None:
        try:
            args.out.write_text(json.dumps(summary, indent=2) + '\n')
        except OSError as err:
            raise UserError(f'cannot write {args.out} ({err.strerror}); choose a writable path '
                            f'for --out.') from err
        print(f'metrics written to {args.out}')


if __name__ == '__main__':
    run_cli(main)
