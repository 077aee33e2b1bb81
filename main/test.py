"""Test a trained InteractHand snapshot.

    cd main && python test.py --gpu 0-3 --test_epoch 80              # HO3D: writes the submission files
    python main/test.py --gpu cpu --testset SYNTH --test_epoch 15       # sets with ground truth: metrics
    python main/test.py --checkpoint path/to/snapshot_80.pth.tar --testset DEX_YCB

The snapshot's architecture (backbone, input size, switches ...) is restored from the snapshot.
HO3D evaluation (v2 or v3: --set ho3d_version=v3): output/result/pred{N}.json and pred{N}.zip in
the challenge format, over that version's evaluation list, ready to upload to its server. DexYCB
also: output/result/dexycb_{setup}_test_{N}.txt for the DexYCB toolkit's hpe_eval.py (absolute
joints in millimetres, each hand placed in its camera by the closed-form fit of the predicted 3D
joints to the predicted 2D joints). Sets with ground truth: the metrics are printed and written to
output/result/metrics_{testset}_{N}.json (keys as main/evaluate.py), and the predictions with
each sample's errors (metres) to predictions_{testset}_{N}.npz. Every set: the first 8 test
crops with the predicted 2D skeleton and segmentation (and the true skeleton where known) are
drawn to output/vis/test_{testset}_{N}.png.
"""
import bootstrap  # noqa: F401  (puts common/, main/, data/ on the path)

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from checkpoints import find_snapshot
from config import Config, add_common_args, args_overrides, config_from_args, parse_gpu
from errors import UserError, run_cli
from evaluate import format_table
from HO3D.HO3D import EVALUATION_SIZES
from inference import load_model
from logger import setup_logging
from runtime import setup_runtime
from testing import Tester, TestResult
from utils.dexycb_results import place_joints, write_results
from utils.submission import write_submission
from utils.vis import prediction_sheet

log = logging.getLogger('interacthand')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, datasets=('testset',))
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument('--test_epoch', type=int, help='test output/model_dump/snapshot_N.pth.tar')
    which.add_argument('--checkpoint', type=Path, help='test this snapshot file')
    return parser.parse_args(argv)


def write_metrics(result: TestResult, conf: Config, epoch: int, ckpt_path: Path, hand_model: str) -> dict:
    """Print the metrics and write them to output/result/metrics_{testset}_{epoch}.json, and the
    per-sample predictions and errors to predictions_{testset}_{epoch}.npz."""
    summary = result.summary()
    n = len(result.joints)
    print(format_table(result.metrics.summary(), n))
    for name, b in summary.get('pa_mpjpe_by_occlusion', {}).items():
        value = f"{b['pa_mpjpe']:.2f} mm" if b['pa_mpjpe'] is not None else 'n/a'
        print(f'PA-MPJPE, occlusion {name:>6}: {value} ({b["count"]} samples)')
    if 'seg_iou_hand' in summary:
        print(f'segmentation IoU (hand): {summary["seg_iou_hand"]:.3f}')
    metrics = {**summary, 'testset': conf.testset, 'epoch': epoch, 'checkpoint': str(ckpt_path),
               'hand_model': hand_model, 'num_samples': n}
    path = conf.result_dir / f'metrics_{conf.testset}_{epoch}.json'
    path.write_text(json.dumps(metrics, indent=2) + '\n')
    per_sample = result.metrics.per_sample()
    npz = conf.result_dir / f'predictions_{conf.testset}_{epoch}.npz'
    np.savez_compressed(npz, joints=result.joints.astype(np.float32), verts=result.verts.astype(np.float32),
                        occlusion=result.occlusion if result.occlusion is not None else np.full(n, -1.0),
                        **{f'error_{k}': v for k, v in per_sample.items()})
    log.info(f'metrics written to {path}; per-sample predictions and errors to {npz}')
    return metrics


def write_examples(examples: dict[str, np.ndarray], path: Path) -> None:
    """Draw the first test crops with their predictions (and ground truth) to the PNG ``path``."""
    sheet = prediction_sheet(examples['img'], examples['joints_img'], examples.get('seg'),
                             examples.get('joints_img_gt'))
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise UserError(f'cannot write {path}; check that {path.parent} is writable (--set output_dir=...)')
    log.info(f'predictions on the first {len(examples["img"])} test crops drawn to {path}')


def write_dexycb_results(result: TestResult, conf: Config, epoch: int) -> Path:
    """Place each predicted hand in its camera and write the DexYCB toolkit's results file,
    output/result/dexycb_{setup}_test_{epoch}.txt."""
    joints, failed = place_joints(result.joints, result.joints_2d, result.focal, result.princpt)
    path = conf.result_dir / f'dexycb_{conf.dexycb_setup}_test_{epoch}.txt'
    write_results(path, result.image_ids, joints)
    if failed.any():
        log.warning(f'{int(failed.sum())} of {len(failed)} hands: no camera in front of the hand fits '
                    'its predicted 2D joints; they are placed by the weak-perspective scale instead')
    log.info(f'DexYCB toolkit results written: {path} (score it in dex-ycb-toolkit with python '
             f'examples/evaluate_hpe.py --name {conf.dexycb_setup}_test --res_file {path.resolve()})')
    return path


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = parse_args(argv)
    conf = config_from_args(args)   # bad options stop here, before any file is read
    path = args.checkpoint if args.checkpoint is not None else find_snapshot(conf.model_dir, args.test_epoch)
    runtime = setup_runtime(parse_gpu(args.gpu))
    if runtime.distributed:
        raise UserError('test.py runs as one process; launch it with python, not torchrun '
                        '(several GPUs: --gpu 0-3 uses DataParallel)')
    # the snapshot's architecture; the command line still wins over it
    model, conf = load_model(path, runtime.device, preset=args.preset, **args_overrides(args))
    conf.make_dirs()
    setup_logging(conf.log_dir / 'test_logs.txt')
    epoch = model.snapshot['epoch'] if model.snapshot['epoch'] is not None else args.test_epoch or 0
    tester = Tester(conf, runtime, model)
    log.info(f'testing {path} (epoch {epoch}) on {conf.testset}, hand model {model.hand_model_id}')
    result = tester.run()
    if result.examples is not None:
        write_examples(result.examples, conf.vis_dir / f'test_{conf.testset}_{epoch}.png')
    if conf.testset == 'HO3D':
        # the challenge wants absolute positions: root-relative predictions placed at root_joint_cam
        root = result.root_joint_cam[:, None, :]
        json_path, zip_path = conf.result_dir / f'pred{epoch}.json', conf.result_dir / f'pred{epoch}.zip'
        write_submission(result.joints + root, result.verts + root, json_path, zip_path)
        if len(root) != EVALUATION_SIZES[conf.ho3d_version]:
            log.warning(f'the submission has {len(root)} frames, but the HO3D {conf.ho3d_version} '
                        f'challenge scores {EVALUATION_SIZES[conf.ho3d_version]}; its server will refuse it')
        log.info(f'HO3D {conf.ho3d_version} submission written: {zip_path} (upload it to the HO3D '
                 f'{conf.ho3d_version} challenge) and {json_path}')
    if conf.testset == 'DEX_YCB':
        write_dexycb_results(result, conf, epoch)
    if result.metrics is not None:
        return write_metrics(result, conf, epoch, path, model.hand_model_id)
    return None


if __name__ == '__main__':
    run_cli(main)
