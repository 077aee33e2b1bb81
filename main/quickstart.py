"""The main job on a fresh machine, with nothing but the built-in defaults (``make quickstart``).

1. generate a small SYNTH set (built-in hand model unless MANO is installed; reused when present),
2. train the ``cpu`` preset on it (CPU, with the schedule of :data:`EPOCHS`; from scratch, its
   snapshots of an earlier run removed first),
3. test it, beside the errors of predicting the training set's mean hand for every image,
4. run the demo on one evaluation image, with its annotated box and with the box the hand
   localiser finds (no ``--bbox``, as for a photo),
then say where every output is. Everything goes to output/quickstart/ (SYNTH to data/SYNTH/data/),
so the snapshots of real trainings in output/model_dump/ are never touched. Each step is an
ordinary command, printed before it runs, so it can be repeated by hand.
"""
import bootstrap  # noqa: F401  (puts common/, main/, data/ on the path)

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from checkpoints import list_snapshots
from config import QUICKSTART_DIR, ROOT, Config
from errors import UserError, run_cli
from utils.mano import ManoLayer
from utils.metrics import mpjpe, pa_mpjpe
from utils.rotation import axis_angle_to_matrix, matrix_to_axis_angle, mean_rotation

NUM_TRAIN, NUM_EVAL, SEED = 2000, 200, 0
# 7 epochs over 2000 frames instead of the preset's 15 over 1000: about as many training steps,
# twice as many different hands (measured with the preset's earlier 64 px crops and 8 epochs:
# PA-MPJPE 3 % below the mean-pose guess instead of 2 % at the same training time; 4000 x 4 was no
# better; docs/RESULTS.md, "Why the quickstart hardly learns the fingers"). 7, not 8: with the hand
# localiser's share of each step, 8 took 16.4 minutes on a slow day of the 2-core machine.
EPOCHS, LR_DEC_EPOCH = 7, '5,6'
OUT = QUICKSTART_DIR
COMMON = ['--gpu', 'cpu', '--preset', 'cpu', '--set', f'output_dir={OUT}']
SCHEDULE = ['--set', f'end_epoch={EPOCHS}', f'lr_dec_epoch={LR_DEC_EPOCH}']


def run(step: str, args: list) -> float:
    """Run one command of the job (stdout/stderr pass through); returns its duration in seconds."""
    cmd = [sys.executable, *map(str, args)]
    print(f'\n=== {step}\n$ {" ".join(cmd)}', flush=True)
    t0 = time.time()
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise UserError(f'the step "{step}" failed (see its message above); fix that and run '
                        'again (finished steps are reused)')
    return time.time() - t0


def synth_ready(root: Path, num_train: int, num_eval: int, seed: int) -> bool:
    """True when ``root`` holds a SYNTH set made with this seed and these sizes."""
    for split, n in (('train', num_train), ('evaluation', num_eval)):
        path = root / 'annotations' / f'SYNTH_{split}_data.json'
        if not path.is_file():
            return False
        data = json.loads(path.read_text())
        if data.get('info', {}).get('seed') != seed or len(data.get('images', [])) != n:
            return False
    return True


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text())['annotations']


def mean_pose_errors(synth_root: Path, mano_path: str | None = None) -> tuple[float, float]:
    """MPJPE and PA-MPJPE (mm, root-relative joints) on the evaluation split of predicting, for
    every image, the training split's mean hand: the chordal mean of its global rotations, the mean
    of its finger poses and shapes. PA-MPJPE does not depend on the global rotation. ``mano_path``:
    the hand model the set was made with (None: the default folder, else the built-in hand)."""
    train = _load(synth_root / 'annotations' / 'SYNTH_train_data.json')
    evaluation = _load(synth_root / 'annotations' / 'SYNTH_evaluation_data.json')
    poses = torch.tensor([a['mano_param']['pose'] for a in train], dtype=torch.float64)
    pose = poses.mean(dim=0)
    pose[:3] = matrix_to_axis_angle(mean_rotation(axis_angle_to_matrix(poses[:, :3])))
    shape = torch.tensor([a['mano_param']['shape'] for a in train]).mean(dim=0)
    with torch.no_grad():
        _, joints = ManoLayer(mano_path)(pose[None].float(), shape[None].float())
    joints = joints.numpy().astype(np.float64)
    gt = np.array([a['joints_coord_cam'] for a in evaluation], dtype=np.float64)
    pred = np.repeat(joints - joints[:, :1], len(gt), axis=0)
    gt = gt - gt[:, :1]
    return float(mpjpe(pred, gt).mean() * 1000), float(pa_mpjpe(pred, gt).mean() * 1000)


def demo_sample(synth_root: Path) -> tuple[Path, list[str], str]:
    """The first evaluation image, its annotated hand box (x y w h) and focal length (pixels), as
    the demo's --bbox and --focal take them: the demo then runs on the crop the model was tested
    on (its own whole-image box search is rough with so small a model; README, Demo)."""
    path = synth_root / 'annotations' / 'SYNTH_evaluation_data.json'
    data = json.loads(path.read_text())
    img = data['images'][0]
    ann = next((a for a in data['annotations'] if a['image_id'] == img['id']), None)
    if ann is None:
        raise UserError(f"{path} has no annotation for its first image (id {img['id']}); delete "
                        f'{synth_root} and run make quickstart again to regenerate it')
    focal = float(np.mean(ann['cam_param']['focal']))
    return synth_root / img['file_name'], [f'{v:g}' for v in ann['bbox']], f'{focal:.1f}'


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog='It takes no options: it is `make quickstart`.').parse_args()
    t_start = time.time()
    synth_root = Path(Config().synth_root)
    times = {}
    if synth_ready(synth_root, NUM_TRAIN, NUM_EVAL, SEED):
        print(f'=== 1. SYNTH data: reusing {synth_root} ({NUM_TRAIN} train + {NUM_EVAL} evaluation frames)')
    else:
        times['data'] = run('1. generate SYNTH data', [
            'data/SYNTH/generate.py', '--num-train', NUM_TRAIN, '--num-eval', NUM_EVAL,
            '--seed', SEED, '--out', synth_root])
    for path in list_snapshots(OUT / 'model_dump').values():   # its own, from an earlier run
        path.unlink()
    times['train'] = run('2. train the cpu preset on SYNTH (from scratch)', [
        'main/train.py', *COMMON, *SCHEDULE, '--trainset', 'SYNTH'])
    times['test'] = run('3. test on the SYNTH evaluation split', [
        'main/test.py', *COMMON, '--testset', 'SYNTH', '--test_epoch', EPOCHS])
    metrics = json.loads((OUT / 'result' / f'metrics_SYNTH_{EPOCHS}.json').read_text())
    base_mpjpe, base_pa = mean_pose_errors(synth_root)

    sample, box, focal = demo_sample(synth_root)
    times['demo'] = run('4. demo on one evaluation image', [
        'demo/demo.py', '--input', sample, '--checkpoint', OUT / 'model_dump' / f'snapshot_{EPOCHS}.pth.tar',
        '--gpu', 'cpu', '--bbox', *box, '--fit', '--focal', focal, '--out', OUT / 'demo'])
    times['demo, box found'] = run('5. the same image without --bbox: the hand localiser finds the hand', [
        'demo/demo.py', '--input', sample, '--checkpoint', OUT / 'model_dump' / f'snapshot_{EPOCHS}.pth.tar',
        '--gpu', 'cpu', '--fit', '--focal', focal, '--out', OUT / 'demo_found'])

    print('\n=== what was made')
    print(f'  SYNTH data         {synth_root}  (pictures of it: asset/synth_grid.png)')
    print(f'  snapshots          {OUT / "model_dump"}')
    print(f'  training log       {OUT / "log" / "train_logs.txt"}')
    print(f'  training curves    {OUT / "log" / "train_curves.png"}')
    print(f'  metrics            {OUT / "result" / f"metrics_SYNTH_{EPOCHS}.json"}')
    print(f'  test predictions   {OUT / "vis" / f"test_SYNTH_{EPOCHS}.png"}')
    print(f'  demo outputs       {OUT / "demo"}  ({sample.stem}_overlay.png and four more); without '
          f'--bbox: {OUT / "demo_found"}')
    print('  time               ' + ', '.join(f'{k} {v:.0f} s' for k, v in times.items())
          + f', total {time.time() - t_start:.0f} s')
    print(f'  again by hand      python main/test.py {" ".join(map(str, COMMON))} --testset SYNTH '
          f'--test_epoch {EPOCHS}')
    print('\n=== the model against predicting the mean hand for every image (mm)')
    print(f'  MPJPE     {metrics["mpjpe"]:6.1f}  (mean hand {base_mpjpe:6.1f})  global rotation and '
          'articulation')
    print(f'  PA-MPJPE  {metrics["pa_mpjpe"]:6.1f}  (mean hand {base_pa:6.1f})  articulation alone '
          '(docs/RESULTS.md: "Why the quickstart hardly learns the fingers")')
    print(f'\nquickstart: PA-MPJPE {metrics["pa_mpjpe"]:.1f} mm (mean-pose baseline {base_pa:.1f} mm)')


if __name__ == '__main__':
    run_cli(main)
