"""How well the hand localiser alone learns to find hands at a given budget, and what it costs:
trains only the localiser (nets/localiser.py) on a SYNTH set's training frames, with the
quickstart's schedule by default, and scores the boxes it finds on the evaluation frames.

    python bench/localiser_fit.py --synth DIR [--epochs 7] [--lr-drops 5,6] [--frames 200]
                                  [--set localiser_size=160 ...] [--refine 0 4] [--json PATH]
                                  [--save PATH | --load PATH]

The training items, loss, optimizer (Adam, the cpu preset's lr times localiser_lr_factor, x0.3 at
each drop) and
the box search (HandReconstructor.find_box) are those of a real training and of the demo; only
the rest of the network is left out. Scores, for each setting of the box search (second-look
window, with and without the mirrored looks) and several thresholds of the localiser's score: the
mean IoU with the box of the true 2D joints (a frame where no hand is found counts 0), the share of
hands found, and the share of views without a hand (each frame's half away from the hand) where it
finds one; and seconds per epoch. ``--refine``: the second-look windows scored (0: none);
``--save``/``--load``: the localiser's weights, to score other settings without training again.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config import Config, args_overrides, parse_set  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from hand_finding import iou  # noqa: E402
from inference import REFINE_WINDOW, HandReconstructor  # noqa: E402
from loaders import TrainingSampler, build_split  # noqa: E402
from model import Model  # noqa: E402
from nets.loss import localiser_loss  # noqa: E402
from quickstart import EPOCHS, LR_DEC_EPOCH  # noqa: E402
from runtime import Runtime  # noqa: E402
from utils.files import output_file  # noqa: E402
from utils.preprocessing import bbox_from_joints, load_img  # noqa: E402


def train(model: Model, conf: Config, epochs: int, drops: list[int]) -> float:
    """Train the localiser alone; returns the mean seconds per epoch."""
    dataset = build_split(conf, 'train')
    sampler = TrainingSampler(dataset, Runtime(torch.device('cpu'), []), conf.seed)
    loader = DataLoader(dataset, batch_size=conf.train_batch_size, sampler=sampler, drop_last=True,
                        num_workers=conf.num_thread, persistent_workers=conf.num_thread > 0)
    opt = torch.optim.Adam(model.localiser.parameters(), lr=conf.lr * conf.localiser_lr_factor)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, drops, conf.lr_dec_factor)
    model.localiser.train()
    t0 = time.time()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for inputs, targets, _ in tqdm(loader, desc=f'epoch {epoch + 1}/{epochs}', leave=False):
            loss = localiser_loss(model.locate(inputs['frame']), targets['frame_box'])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    model.localiser.eval()
    return (time.time() - t0) / epochs


THRESHOLDS = (0.05, 0.1, 0.2, 0.3)


@torch.no_grad()
def score(model: Model, conf: Config, root: Path, frames: int,
          settings: list[tuple[float, bool]]) -> dict[str, np.ndarray]:
    """On the first evaluation frames, for each (second-look window, mirror) setting of
    ``find_box`` (one column each, (frames, len(settings))): the found box's IoU with the true
    joints' box and its score, and the score on the frame's half away from the hand (a view without
    a hand, scaled up to the frame's size)."""
    finder = HandReconstructor(model, conf)

    def best_box(img: np.ndarray, refine: float, mirror: bool) -> tuple[np.ndarray, float]:
        """The box find_box gives and its score, whatever the score."""
        box, _, s = finder.find_box(img, min_score=0.0, refine=refine, mirror=mirror)
        return box, s

    data = json.loads((root / 'annotations' / 'SYNTH_evaluation_data.json').read_text())
    anns = {a['image_id']: a for a in data['annotations']}
    ious, scores, empty = [], [], []
    for img_info in tqdm(data['images'][:frames], desc='scoring', leave=False):
        img = load_img(root / img_info['file_name'])
        truth = bbox_from_joints(np.array(anns[img_info['id']]['joints_img']), expansion=1.0)
        found = [best_box(img, r, m) for r, m in settings]
        ious.append([iou(box, truth) for box, _ in found])
        scores.append([s for _, s in found])
        h, w = img.shape[:2]
        half = cv2.resize(img[:, w // 2:] if truth[0] + truth[2] / 2 < w / 2 else img[:, :w // 2], (w, h))
        empty.append([best_box(half, 0.0, m)[1] for _, m in settings])
    return {'iou': np.array(ious), 'score': np.array(scores), 'empty_score': np.array(empty)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--synth', type=Path, required=True, help='a SYNTH folder (data/SYNTH/generate.py)')
    parser.add_argument('--epochs', type=int, default=EPOCHS, help=f'epochs (default {EPOCHS}, as the quickstart)')
    parser.add_argument('--lr-drops', default=LR_DEC_EPOCH,
                        help=f'epochs after which lr drops x0.3 (default {LR_DEC_EPOCH}, as the quickstart)')
    parser.add_argument('--frames', type=int, default=200, help='evaluation frames scored (default 200)')
    parser.add_argument('--set', nargs='+', action='extend', default=[], metavar='KEY=VALUE',
                        help='config fields over the cpu preset, e.g. localiser_size=160')
    parser.add_argument('--refine', nargs='+', type=float, default=[0.0, REFINE_WINDOW], metavar='K',
                        help=f'second-look windows to score, in first-box sides (0: one look; '
                        f'default 0 {REFINE_WINDOW:g}, the demo\'s)')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the figures to this JSON file')
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument('--save', type=Path, metavar='PATH', help="save the trained localiser's weights here")
    weights.add_argument('--load', type=Path, metavar='PATH', help='score these saved weights; no training')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    parse_set(args.set)
    args.preset, args.trainset = 'cpu', 'SYNTH'
    conf = Config().update(preset='cpu', **{**args_overrides(args), 'synth_root': str(args.synth), 'pretrained': False})
    if not conf.localiser_size:
        raise UserError('localiser_size is 0: there is no hand localiser to train')
    drops = [int(v) for v in args.lr_drops.split(',') if v]
    torch.manual_seed(conf.seed)
    model = Model(conf).eval()
    if args.load:
        try:
            model.localiser.load_state_dict(torch.load(args.load, map_location='cpu'))
        except (OSError, RuntimeError) as err:
            raise UserError(f'cannot load localiser weights from {args.load} ({err}); pass a file '
                            'written by --save with the same localiser') from None
        seconds = None
    else:
        seconds = train(model, conf, args.epochs, drops)
        if args.save:
            torch.save(model.localiser.state_dict(), output_file(args.save, '--save'))
    settings = [(r, m) for m in (False, True) for r in args.refine]
    names = [f'{"mirrored, " if m else ""}second look {r:g}' for r, m in settings]
    found = score(model, conf, args.synth, args.frames, settings)
    rows = {name: {f'{t:g}': {'mean_iou': float(np.where(found['score'][:, i] >= t, found['iou'][:, i], 0.0).mean()),
                              'found_rate': float((found['score'][:, i] >= t).mean()),
                              'false_alarms': float((found['empty_score'][:, i] >= t).mean())} for t in THRESHOLDS}
            for i, name in enumerate(names)}
    result = {'localiser_size': conf.localiser_size, 'epochs': None if args.load else args.epochs,
              'seconds_per_epoch': seconds, 'frames': len(found['score']),
              'iou_over_0.5': {name: float((found['iou'][:, i] > 0.5).mean()) for i, name in enumerate(names)},
              'by_setting_and_threshold': rows}
    trained = f'weights {args.load}' if args.load else f'{args.epochs} epochs ({seconds:.0f} s each)'
    print(f"localiser_size {conf.localiser_size}, {trained}, {len(found['score'])} frames")
    for r, by_t in rows.items():
        print(f"{r} (0: none); IoU > 0.5 on {100 * result['iou_over_0.5'][r]:.0f} % of the best boxes")
        for t, row in by_t.items():
            print(f"  score >= {t:<5} mean IoU {row['mean_iou']:.3f}, hands found {100 * row['found_rate']:.0f} %, "
                  f"found in views without a hand {100 * row['false_alarms']:.0f} %")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    run_cli(main)
