"""Generate SYNTH, the built-in data set of hands holding or touching objects.

    python data/SYNTH/generate.py --num-train 2000 --num-eval 500 --seed 0 [--out DIR] [--workers 2] [--mano-path DIR]
    python data/SYNTH/generate.py --num-train 16 --num-eval 0 --out /tmp/s --grid asset/synth_grid.png

Writes, under DIR (default data/SYNTH/data, the config's ``synth_root``), ``annotations/SYNTH_{train,evaluation}_data.json``
(COCO format, HandOccNet-style fields, full ground truth in both splits), JPEG frames under
``<split>/rgb/`` and segmentation PNGs (0 background, 1 hand, 2 object) under ``<split>/seg/``.
The scenes are described in scene.py. Frame i of a split depends only on (seed, split, i), so
the data does not depend on --workers. Prints frames/s at the end.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing as mp  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from typing import Iterator  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config import Config  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from SYNTH.frames import FrameMaker  # noqa: E402
from SYNTH.scene import HEIGHT, SPLITS, WIDTH  # noqa: E402
from utils.files import write_atomically  # noqa: E402
from utils.mano import load_hand_model  # noqa: E402
from utils.metrics import OCCLUSION_BUCKETS  # noqa: E402
from utils.vis import LABEL_COLOURS  # noqa: E402

GRID_TILE = (256, 192)

_maker: FrameMaker | None = None


def annotation_path(out: Path, split: str) -> Path:
    return out / 'annotations' / f'SYNTH_{split}_data.json'


def _init_worker(mano_path: str) -> None:
    """Pool initializer: the parent's hand-model folder, one frame maker per process, one thread
    each (the pool is the parallelism)."""
    global _maker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends the pool
    logging.getLogger('interacthand').setLevel(logging.ERROR)  # the parent has said which hand model
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    os.environ.setdefault('LP_NUM_THREADS', '1')  # Mesa llvmpipe: one rendering thread
    _maker = FrameMaker(mano_path)


def _make_and_write(task: tuple[str, str, int, int]) -> tuple[str, int, dict, float]:
    """Render frame ``index`` of ``split`` and write its JPEG and segmentation PNG under ``out``;
    returns (split, index, annotation without ids, CPU seconds spent)."""
    out, split, index, seed = task
    cpu = time.process_time()
    frame = _maker.make(seed, split, index)
    name = f'{index:06d}'
    rgb = Path(out) / split / 'rgb' / f'{name}.jpg'
    seg = Path(out) / split / 'seg' / f'{name}.png'
    ok = cv2.imwrite(str(rgb), frame.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok &= cv2.imwrite(str(seg), frame.seg, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise UserError(f'cannot write {rgb} or {seg}; check that the disk is not full')
    ann = frame.annotation()
    ann['seg_file_name'] = f'{split}/seg/{name}.png'
    return split, index, ann, time.process_time() - cpu


def _run_here(tasks: list[tuple], mano_path: str | None) -> Iterator[tuple[str, int, dict, float]]:
    """Make the frames in this process (no thread limits: the caller's settings stay)."""
    global _maker
    _maker = FrameMaker(mano_path)
    try:
        yield from map(_make_and_write, tasks)
    finally:
        _maker.close()
        _maker = None


def _run_in_pool(tasks: list[tuple], workers: int, mano_path: str | None) -> Iterator[tuple[str, int, dict, float]]:
    """Make the frames in ``workers`` fresh processes (spawned: forking after this process used
    torch threads or an EGL display can hang), in any order."""
    with mp.get_context('spawn').Pool(workers, _init_worker, (mano_path,)) as pool:
        yield from pool.imap_unordered(_make_and_write, tasks, chunksize=2)


def _coco(split: str, seed: int, model_id: str, anns: list[dict]) -> dict:
    """The annotation file of one split, frames in index order."""
    images, annotations = [], []
    for index, ann in enumerate(anns):
        images.append({'id': index, 'file_name': f'{split}/rgb/{index:06d}.jpg',
                       'width': WIDTH, 'height': HEIGHT})
        annotations.append({'id': index, 'image_id': index, 'category_id': 1, **ann})
    return {'info': {'generator': 'InteractHand SYNTH', 'seed': seed, 'split': split,
                     'hand_model': model_id, 'width': WIDTH, 'height': HEIGHT},
            'images': images, 'annotations': annotations,
            'categories': [{'id': 1, 'name': 'hand'}]}


def generate(out: Path, num_train: int, num_eval: int, seed: int, workers: int = 2,
             mano_path: str | Path | None = None) -> dict:
    """Render and write the data set with the hand model of ``mano_path`` (a MANO file or folder;
    None: the default folder; the built-in hand without MANO); returns {'frames', 'seconds', 'fps', 'cpu_per_frame',
    'occlusion'}: wall-clock time and rate (process start-up included), CPU seconds per frame
    (making and writing it, in its worker), and every frame's occlusion ratio (train, then
    evaluation)."""
    counts = {'train': num_train, 'evaluation': num_eval}
    try:
        for split in SPLITS:
            if counts[split]:
                (out / split / 'rgb').mkdir(parents=True, exist_ok=True)
                (out / split / 'seg').mkdir(parents=True, exist_ok=True)
        (out / 'annotations').mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f'cannot create the output folder {out} ({err.strerror}); pick a writable '
                        '--out folder') from None
    mano_path = None if mano_path is None else str(mano_path)
    model_id = load_hand_model(mano_path).model_id
    written = [split for split in SPLITS if counts[split]]
    for split in written:  # a split being rewritten has no annotation file until it is complete
        annotation_path(out, split).unlink(missing_ok=True)
    tasks = [(str(out), split, i, seed) for split in SPLITS for i in range(counts[split])]
    anns: dict[str, list] = {split: [None] * counts[split] for split in SPLITS}
    start, cpu = time.perf_counter(), 0.0
    bar = tqdm(total=len(tasks), desc='SYNTH', unit='frame')
    results = _run_here(tasks, mano_path) if workers <= 1 else _run_in_pool(tasks, workers, mano_path)
    try:
        for split, index, ann, spent in results:
            anns[split][index], cpu = ann, cpu + spent
            bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(f"generation interrupted: the {' and '.join(written)} frames in {out} are incomplete and "
              'have no annotation file; run the same command again to make them', file=sys.stderr)
        raise
    bar.close()
    seconds = time.perf_counter() - start
    for split in written:
        text = json.dumps(_coco(split, seed, model_id, anns[split]))
        write_atomically(annotation_path(out, split), lambda tmp: tmp.write_text(text))
    occlusion = [a['occlusion'] for split in SPLITS for a in anns[split]]
    return {'frames': len(tasks), 'seconds': seconds, 'fps': len(tasks) / max(seconds, 1e-9),
            'cpu_per_frame': cpu / len(tasks), 'occlusion': occlusion}


def occlusion_histogram(occlusion: list[float]) -> str:
    """'0-20%: a %, 20-40%: b %, >40%: c %' over the frames' occlusion ratios (the buckets of
    :data:`utils.metrics.OCCLUSION_BUCKETS`)."""
    occ = np.asarray(occlusion)
    return ', '.join(f'{name}: {100 * ((occ >= low) & (occ < high)).mean():.0f} %'
                     for name, low, high in OCCLUSION_BUCKETS)


def write_grid(out: Path, png: Path, split: str = 'train', count: int = 16) -> None:
    """A square grid of the first ``count`` frames of ``split``: each frame with the visible hand
    tinted and outlined green, visible objects magenta, and the occlusion ratio written on it."""
    path = annotation_path(out, split)
    if not path.is_file():
        raise UserError(f'{path} does not exist; generate frames first (--num-train 16)')
    data = json.loads(path.read_text())
    anns = data['annotations'][:count]
    if len(anns) < count:
        raise UserError(f'the grid needs {count} {split} frames but {path} has {len(anns)}; '
                        f'use --num-train {count} or more')
    tiles = []
    for img_info, ann in zip(data['images'], anns):
        img = cv2.imread(str(out / img_info['file_name']))[..., ::-1].astype(np.float32)
        seg = cv2.imread(str(out / ann['seg_file_name']), cv2.IMREAD_UNCHANGED)
        for label, colour in LABEL_COLOURS.items():
            mask, tint = seg == label, np.array(colour)
            img[mask] = 0.88 * img[mask] + 0.12 * tint
            edges = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5)))
            img[edges > 0] = tint
        tile = cv2.resize(img.astype(np.uint8), GRID_TILE, interpolation=cv2.INTER_AREA)
        text = f"occlusion {100 * ann['occlusion']:.0f} %"
        cv2.rectangle(tile, (0, 0), (124, 18), (0, 0, 0), -1)
        cv2.putText(tile, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    side = int(np.sqrt(count))
    grid = np.concatenate([np.concatenate(tiles[r * side:(r + 1) * side], axis=1)
                           for r in range(side)], axis=0)
    png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(png), grid[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise UserError(f'cannot write {png}; check the folder and the .png extension')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Render SYNTH: hands holding or touching objects, with '
                                'annotations in the HO3D/HandOccNet format and segmentation maps.')
    p.add_argument('--num-train', type=int, default=2000, help='training frames (default 2000)')
    p.add_argument('--num-eval', type=int, default=500, help='evaluation frames (default 500)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    defaults = Config()
    p.add_argument('--out', type=Path, default=Path(defaults.synth_root),
                   help=f'output folder (default {defaults.synth_root})')
    p.add_argument('--mano-path', type=Path, default=Path(defaults.mano_path),
                   help='MANO_RIGHT.pkl, or the folder holding it (default: the reference location, '
                   f'{defaults.mano_path}); without it, the built-in hand model')
    p.add_argument('--workers', type=int, default=min(os.cpu_count() or 1, 8),
                   help='rendering processes (default: one per CPU core, at most 8)')
    p.add_argument('--grid', type=Path, metavar='PNG',
                   help='also write a 4x4 picture of the first 16 training frames with their masks')
    args = p.parse_args(argv)
    for name in ('num_train', 'num_eval'):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} is {getattr(args, name)}; give 0 or more")
    if args.num_train + args.num_eval == 0:
        raise UserError('nothing to generate: give --num-train and/or --num-eval above 0')
    if args.workers < 1:
        raise UserError(f'--workers is {args.workers}; give 1 or more')
    if args.seed < 0:
        raise UserError(f'--seed is {args.seed}; give 0 or more')
    if args.grid is not None and args.num_train < 16:
        raise UserError(f'--grid needs 16 training frames but --num-train is {args.num_train}; '
                        'use --num-train 16 or more')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stats = generate(args.out, args.num_train, args.num_eval, args.seed, args.workers, args.mano_path)
    print(f"occlusion of the frames: {occlusion_histogram(stats['occlusion'])}")
    if args.grid is not None:
        write_grid(args.out, args.grid)
        print(f'grid written to {args.grid}')
    print(f"{stats['frames']} frames written to {args.out}; CPU time {1000 * stats['cpu_per_frame']:.0f} "
          f"ms per frame ({1 / stats['cpu_per_frame']:.1f} frames/s per free core)")
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s: {stats['fps']:.1f} frames/s "
          f'with {args.workers} worker(s)')


if __name__ == '__main__':
    run_cli(main)
