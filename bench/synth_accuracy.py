"""Does interaction-aware segmentation and refinement pay off under occlusion? Trains InteractHand,
the one-view baseline and the single ablations on the same SYNTH split with the same budget, tests
each, and prints one table (also written as JSON and as a bar chart).

    python bench/synth_accuracy.py --budget short     # about an hour on 2 CPU cores
    python bench/synth_accuracy.py --budget long

Every configuration uses the ``cpu`` preset, the same epochs and the same seed; only the ablation
switches differ. Results go to output/bench/synth_accuracy/<budget>/. An interrupted run resumes
where it stopped (finished configurations are reused, a half-trained one continues from its
newest snapshot).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from config import ROOT  # noqa: E402
from errors import run_cli  # noqa: E402
from quickstart import mean_pose_errors, run, synth_ready  # noqa: E402
from run_all import machine  # noqa: E402
from utils.metrics import OCCLUSION_BUCKETS  # noqa: E402

CONFIGS = {
    'InteractHand': {},
    'baseline (all off)': dict(use_seg=False, use_iet=False, use_cgblock=False, use_let=False),
    'no segmentation': dict(use_seg=False),
    'no IET': dict(use_iet=False),
    'no CGBlock': dict(use_cgblock=False),
    'no LET': dict(use_let=False),
}
BUDGETS = {
    'short': dict(num_train=2000, num_eval=500, end_epoch=12, lr_dec_epoch='8,11'),
    'long': dict(num_train=6000, num_eval=1000, end_epoch=30, lr_dec_epoch='20,27'),
}
SEED = 1
BUCKETS = tuple(name for name, _, _ in OCCLUSION_BUCKETS)


def slug(name: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in name.lower()).strip('_')


def train_and_test(name: str, switches: dict, budget: dict, data: Path, out: Path) -> dict:
    """Train one configuration (resuming if interrupted) and test it; returns its metrics with
    the training time."""
    run_dir = out / slug(name)
    result_file = run_dir / 'bench_result.json'
    if result_file.is_file():
        print(f'\n=== {name}: reusing {result_file}')
        return json.loads(result_file.read_text())
    sets = [f'output_dir={run_dir}', f'synth_root={data}', f'end_epoch={budget["end_epoch"]}',
            f'lr_dec_epoch={budget["lr_dec_epoch"]}'] + [f'{k}={v}' for k, v in switches.items()]
    common = ['--gpu', 'cpu', '--preset', 'cpu', '--set', *sets]
    timing_file = run_dir / 'train_seconds.json'
    seconds = json.loads(timing_file.read_text())['seconds'] if timing_file.is_file() else 0.0
    seconds += run(f'train {name}', ['main/train.py', *common, '--trainset', 'SYNTH', '--seed', SEED, '--continue'])
    timing_file.write_text(json.dumps({'seconds': seconds}))
    run(f'test {name}', ['main/test.py', *common, '--testset', 'SYNTH', '--test_epoch', budget['end_epoch']])
    metrics = json.loads((run_dir / 'result' / f'metrics_SYNTH_{budget["end_epoch"]}.json').read_text())
    result = {'name': name, 'switches': switches, 'train_seconds': seconds, **metrics}
    result_file.write_text(json.dumps(result, indent=1))
    return result


def table(results: list[dict], mean_pose: float) -> str:
    head = (f'{"configuration":<20} {"PA-MPJPE":>9} {"PA-MPVPE":>9} {"F@5":>6} {"F@15":>6} '
            + ' '.join(f'{"PA " + b:>10}' for b in BUCKETS) + f' {"seg IoU":>8} {"train":>7}')
    lines = [head, '-' * len(head)]
    for r in results:
        occ = r.get('pa_mpjpe_by_occlusion', {})
        cells = ' '.join(f'{occ[b]["pa_mpjpe"]:10.2f}' if occ.get(b, {}).get('pa_mpjpe') is not None
                         else f'{"n/a":>10}' for b in BUCKETS)
        iou = f'{r["seg_iou_hand"]:8.3f}' if r.get('seg_iou_hand') is not None else f'{"-":>8}'
        lines.append(f'{r["name"]:<20} {r["pa_mpjpe"]:9.2f} {r["pa_mpvpe"]:9.2f} {r["f5"]:6.3f} '
                     f'{r["f15"]:6.3f} {cells} {iou} {r["train_seconds"] / 60:6.1f}m')
    counts = results[0].get('pa_mpjpe_by_occlusion', {})
    lines.append('(errors in mm; evaluation frames per occlusion bucket: '
                 + ', '.join(f'{b} {counts.get(b, {}).get("count", 0)}' for b in BUCKETS)
                 + f'; predicting the training mean pose: PA-MPJPE {mean_pose:.2f} mm)')
    return '\n'.join(lines)


def bar_chart(results: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    groups = ['overall', *BUCKETS]
    values = np.array([[r['pa_mpjpe']] + [r['pa_mpjpe_by_occlusion'][b]['pa_mpjpe'] or np.nan for b in BUCKETS]
                       for r in results])
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        ax.bar(np.arange(len(groups)) + (i - (len(results) - 1) / 2) * width, values[i], width, label=r['name'])
    ax.set_xticks(np.arange(len(groups)), ['all frames', *[f'occlusion {b}' for b in BUCKETS]])
    ax.set_ylabel('PA-MPJPE (mm, lower is better)')
    ax.set_title(title)
    ax.legend(ncol=3, fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--budget', choices=sorted(BUDGETS), default='short')
    parser.add_argument('--only', nargs='+', choices=list(CONFIGS), metavar='NAME',
                        help='run only these configurations')
    args = parser.parse_args()
    budget = BUDGETS[args.budget]
    out = ROOT / 'output' / 'bench' / 'synth_accuracy' / args.budget
    data = ROOT / 'output' / 'bench' / f'SYNTH_{budget["num_train"]}_{budget["num_eval"]}_seed{SEED}'
    t0 = time.time()
    if not synth_ready(data, budget['num_train'], budget['num_eval'], SEED):
        run('generate SYNTH', ['data/SYNTH/generate.py', '--num-train', budget['num_train'],
                               '--num-eval', budget['num_eval'], '--seed', SEED, '--out', data])
    names = args.only or list(CONFIGS)
    results = [train_and_test(n, CONFIGS[n], budget, data, out) for n in names]
    mean_pose = mean_pose_errors(data)[1]
    text = table(results, mean_pose)
    print('\n' + text)
    summary = {'budget': args.budget, **budget, 'seed': SEED, 'preset': 'cpu', 'data': str(data),
               'machine': machine(),
               'mean_pose_pa_mpjpe': mean_pose, 'wall_seconds': time.time() - t0, 'results': results}
    out.mkdir(parents=True, exist_ok=True)
    (out / 'synth_accuracy.json').write_text(json.dumps(summary, indent=1))
    (out / 'synth_accuracy.txt').write_text(text + '\n')
    bar_chart(results, out / 'synth_accuracy.png',
              f'SYNTH, {args.budget} budget: {budget["num_train"]} training frames, {budget["end_epoch"]} epochs, cpu preset')
    print(f'written: {out / "synth_accuracy.json"}, {out / "synth_accuracy.png"}')


if __name__ == '__main__':
    run_cli(main)
