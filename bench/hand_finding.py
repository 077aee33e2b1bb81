"""How well a snapshot finds the hand in a whole frame (the demo without --bbox), on SYNTH
evaluation frames.

    python bench/hand_finding.py [--checkpoint PATH] [--synth DIR] [--frames 200] [--json PATH]

Per frame: the box the demo would find (common/inference.py, HandReconstructor.find_box: the hand
localiser, or for older snapshots a first pass over the whole frame) against the box of the
ground-truth 2D joints (IoU; a frame where no hand is found counts 0), and the 2D joint error of
the network on the crop of the found box against its error on the crop of the annotated box
(the demo's --bbox), both in units of the joints box's larger side. Defaults: the newest
quickstart snapshot and the quickstart's SYNTH set (make quickstart).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from checkpoints import newest_snapshot  # noqa: E402
from config import QUICKSTART_DIR, Config, parse_gpu  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from inference import HandReconstructor, load_model  # noqa: E402
from runtime import select_device  # noqa: E402
from utils.files import output_file  # noqa: E402
from utils.preprocessing import bbox_from_joints, load_img  # noqa: E402

TARGET_IOU, TARGET_RATIO = 0.6, 1.3


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x, y, w, h."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def evaluate(rec: HandReconstructor, root: Path, frames: int) -> dict:
    """The per-frame figures over the first ``frames`` evaluation frames of the SYNTH set in ``root``."""
    path = root / 'annotations' / 'SYNTH_evaluation_data.json'
    if not path.is_file():
        raise UserError(f'{path} does not exist; make the SYNTH set first (make quickstart, or '
                        'data/SYNTH/generate.py) or pass --synth DIR')
    data = json.loads(path.read_text())
    anns = {a['image_id']: a for a in data['annotations']}
    rows = {'iou': [], 'found': [], 'err_found': [], 'err_annotated': [], 'seconds': []}
    for img_info in tqdm(data['images'][:frames], desc='hand finding', unit='frame'):
        ann = anns[img_info['id']]
        img = load_img(root / img_info['file_name'])
        joints = np.array(ann['joints_img'], dtype=np.float64)
        truth = bbox_from_joints(joints, expansion=1.0)
        scale = float(max(truth[2:]))
        given = rec.predict(img, np.array(ann['bbox'], dtype=np.float32))
        rows['err_annotated'].append(np.linalg.norm(given.joints_2d - joints, axis=1).mean() / scale)
        t0 = time.perf_counter()
        try:
            box = rec.find_box(img)[0]
        except UserError:          # no hand found
            box = None
        rows['seconds'].append(time.perf_counter() - t0)
        rows['found'].append(box is not None)
        rows['iou'].append(iou(box, truth) if box is not None else 0.0)
        if box is not None:
            found = rec.predict(img, box)
            rows['err_found'].append(np.linalg.norm(found.joints_2d - joints, axis=1).mean() / scale)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', type=Path, help='snapshot (default: the newest of make quickstart)')
    parser.add_argument('--synth', type=Path, help=f'SYNTH folder (default {Config().synth_root})')
    parser.add_argument('--frames', type=int, default=200, help='evaluation frames (default 200)')
    parser.add_argument('--gpu', default='cpu', help='cpu (default) or a GPU id')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the figures to this JSON file')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.frames < 1:
        raise UserError(f'--frames must be at least 1, got {args.frames}')
    checkpoint = args.checkpoint or newest_snapshot(QUICKSTART_DIR / 'model_dump')
    device, _ = select_device(parse_gpu(args.gpu))
    model, conf = load_model(checkpoint, device)
    rows = evaluate(HandReconstructor(model, conf), Path(args.synth or conf.synth_root), args.frames)
    iou_mean = float(np.mean(rows['iou']))
    err_found = float(np.mean(rows['err_found'])) if rows['err_found'] else float('nan')
    err_given = float(np.mean(rows['err_annotated']))
    ratio = err_found / err_given
    summary = {'checkpoint': str(checkpoint), 'frames': len(rows['iou']), 'method':
               'hand localiser' if model.localiser is not None else 'first pass over the whole frame',
               'mean_iou': iou_mean, 'iou_over_0.5': float(np.mean(np.array(rows['iou']) > 0.5)),
               'found_rate': float(np.mean(rows['found'])), 'err2d_found_box': err_found,
               'err2d_annotated_box': err_given, 'err2d_ratio': ratio,
               'ms_per_frame': 1000 * float(np.mean(rows['seconds']))}
    print(f"{summary['method']}, {summary['frames']} SYNTH evaluation frames, {checkpoint}")
    print(f"  mean IoU with the joints' box  {iou_mean:.3f}  ({'met' if iou_mean >= TARGET_IOU else 'MISSED'}: "
          f'>= {TARGET_IOU}); IoU > 0.5 on {100 * summary["iou_over_0.5"]:.0f} % of frames; '
          f'hand found on {100 * summary["found_rate"]:.1f} %')
    print(f'  2D joint error (share of the joints box): found box {err_found:.3f}, annotated box '
          f"{err_given:.3f}, ratio {ratio:.2f} ({'met' if ratio <= TARGET_RATIO else 'MISSED'}: <= {TARGET_RATIO})")
    print(f"  finding the box: {summary['ms_per_frame']:.1f} ms per frame on {device}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + '\n')


if __name__ == '__main__':
    run_cli(main)
