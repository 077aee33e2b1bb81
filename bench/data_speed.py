"""Data loader throughput, samples/s per worker (one process, one thread), augmentation on.

    python bench/data_speed.py [--synth DIR] [--samples 300] [--size 256] [--json PATH]

Measures the training split of
- SYNTH (``--synth DIR``, or a 64-frame set made with data/SYNTH/generate.py in a temporary folder),
- HO3D-format data: a fixture in the exact HO3D schema (HandOccNet annotation file, 640x480 PNG
  frames as in HO3D v2, v2 segmentation JPEGs at half resolution), written to a temporary folder,
- the same HO3D fixture without masks on its first pass, when every item renders and caches its
  MANO silhouette (later epochs read the cache and run at the HO3D-format rate).

Target (issue 4): at least 80 samples/s per worker at 256 px.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config import ROOT  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from utils.files import output_file  # noqa: E402
from HO3D.HO3D import HO3D  # noqa: E402
from SYNTH.SYNTH import SYNTH  # noqa: E402
from utils.mano import ManoLayer  # noqa: E402

TARGET = 80.0
WIDTH, HEIGHT, FOCAL, PRINCPT = 640, 480, 615.0, (320.0, 240.0)


def write_ho3d_fixture(root: Path, frames: int, masks: bool, seed: int = 0) -> None:
    """HO3D_train_data.json and train/<SEQ>/rgb/<FRAME>.png (+ seg/<FRAME>.jpg) with random right
    hands of the default hand model 0.4-0.7 m in front of the camera, on textured backgrounds."""
    rng = np.random.default_rng(seed)
    layer = ManoLayer()
    images, anns = [], []
    for i in range(frames):
        pose = np.concatenate([rng.normal(0, 1.0, 3), rng.normal(0, 0.2, 45)]).astype(np.float32)
        shape = rng.normal(0, 1, 10).astype(np.float32)
        with torch.no_grad():
            _, j = layer(torch.from_numpy(pose)[None], torch.from_numpy(shape)[None])
        joints = j[0].numpy() - j[0, 9].numpy() + [rng.uniform(-0.1, 0.1), rng.uniform(-0.08, 0.08),
                                                   rng.uniform(0.4, 0.7)]
        name = f'SEQ{i % 4}/rgb/{i:04d}.png'
        images.append({'id': i, 'file_name': name, 'width': WIDTH, 'height': HEIGHT})
        anns.append({'id': i, 'image_id': i, 'joints_coord_cam': joints.tolist(),
                     'cam_param': {'focal': [FOCAL, FOCAL], 'princpt': list(PRINCPT)},
                     'mano_param': {'pose': pose.tolist(), 'shape': shape.tolist()}})
        base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (WIDTH, HEIGHT))
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        path = root / 'train' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), noisy)
        if masks:
            mask = np.zeros((HEIGHT // 2, WIDTH // 2, 3), np.uint8)
            cv2.circle(mask, (WIDTH // 4, HEIGHT // 4), 60, (0, 0, 255), -1)     # hand, red (BGR)
            cv2.rectangle(mask, (120, 60), (200, 120), (255, 0, 0), -1)          # object, blue
            seg = root / 'train' / f'SEQ{i % 4}/seg/{i:04d}.jpg'
            seg.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(seg), mask)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    with open(root / 'annotations' / 'HO3D_train_data.json', 'w') as fh:
        json.dump({'images': images, 'annotations': anns}, fh)


def make_synth(out: Path, frames: int) -> None:
    """A small SYNTH training set from the generator's command line."""
    cmd = [sys.executable, str(ROOT / 'data' / 'SYNTH' / 'generate.py'), '--num-train', str(frames),
           '--num-eval', '0', '--seed', '0', '--out', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise UserError(f"generating SYNTH failed ({run.stderr.strip().splitlines()[-1:]}); pass "
                        'an existing set with --synth DIR')


def throughput(ds: torch.utils.data.Dataset, samples: int, label: str, warmup: int = 5) -> float:
    """Items per second over ``samples`` items (random augmentation), after ``warmup`` items."""
    for i in range(min(warmup, samples)):
        ds[i % len(ds)]
    t0 = time.perf_counter()
    for i in tqdm(range(samples), desc=label, leave=False):
        ds[(i + warmup) % len(ds)]
    return samples / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--synth', type=Path, help='an existing SYNTH folder (default: generate 64 frames)')
    p.add_argument('--samples', type=int, default=300, help='items timed per dataset (default 300)')
    p.add_argument('--size', type=int, default=256, help='input size in pixels (default 256)')
    p.add_argument('--json', type=Path, metavar='PATH', help='also write the numbers to this JSON file')
    args = p.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.samples < 1:
        raise UserError(f'--samples must be at least 1, got {args.samples}')
    if args.size < 64 or args.size % 32:
        raise UserError(f'--size {args.size}: use a multiple of 32 of at least 64, e.g. 128 or 256')
    train_file = args.synth / 'annotations' / 'SYNTH_train_data.json' if args.synth else None
    if train_file is not None and not train_file.is_file():
        raise UserError(f'--synth {args.synth}: {train_file} does not exist; pass a folder made by '
                        'data/SYNTH/generate.py, or leave --synth out to make a small one')
    torch.set_num_threads(1)  # one DataLoader worker's share of the machine
    cv2.setNumThreads(1)
    np.random.seed(0)
    to_tensor = transforms.ToTensor()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_ho3d_fixture(tmp / 'ho3d', 64, masks=True)
        rates['ho3d_format'] = throughput(HO3D(to_tensor, 'train', tmp / 'ho3d', args.size),
                                          args.samples, 'HO3D-format')

        write_ho3d_fixture(tmp / 'ho3d_plain', 64, masks=False)
        rates['ho3d_first_pass_rendering'] = throughput(HO3D(to_tensor, 'train', tmp / 'ho3d_plain', args.size), 60,
                                                        'HO3D-format, rendering silhouettes', warmup=0)

        synth = args.synth
        if synth is None:
            synth = tmp / 'synth'
            make_synth(synth, 64)
        rates['synth'] = throughput(SYNTH(to_tensor, 'train', synth, args.size), args.samples, 'SYNTH')

    ok = min(rates['ho3d_format'], rates['synth']) >= TARGET
    print(f"data_speed: SYNTH {rates['synth']:.1f}, HO3D-format {rates['ho3d_format']:.1f} "
          f"samples/s per worker ({args.size} px, augmentation on, 1 thread; target {TARGET:.0f}: "
          f"{'met' if ok else 'MISSED'}); first pass rendering silhouettes "
          f"{rates['ho3d_first_pass_rendering']:.1f} samples/s")
    if args.json:
        args.json.write_text(json.dumps({'size': args.size, 'samples': args.samples,
                                         'target': TARGET, 'target_met': ok,
                                         'samples_per_s_per_worker': rates}, indent=2))


if __name__ == '__main__':
    run_cli(main)
