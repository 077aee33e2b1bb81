"""Does interaction-aware segmentation and refinement pay off under occlusion? Trains InteractHand,
the one-view baseline and the ablations on the same SYNTH data with the same budget, tests each,
and compares every configuration with the baseline frame by frame.

    python bench/synth_accuracy.py --budget medium --seed 1 --only InteractHand baseline \\
        --json docs/results/synth_medium_seed1.json
    python bench/synth_accuracy.py --budget medium --seed 1 --continue ...   # after an interruption
    python bench/synth_accuracy.py --report docs/results/synth_medium_seed*.json \
        --plot docs/results/synth_medium.png                  # the table and chart over seeds

Budgets (every configuration: the ``cpu`` preset, the same data, epochs and seed):
  short   2000 training frames, 500 evaluation frames, 12 epochs (lr x0.3 at 8 and 11)
  medium  6000 training frames, 600 evaluation frames (200 per occlusion bucket, kept from 1000
          generated, the first of each bucket in frame order), 12 epochs (lr x0.3 at 8 and 11),
          validation every 2 epochs; about 40 minutes of training per configuration on 2 cores
  long    6000 training frames, 1000 evaluation frames, 30 epochs (lr x0.3 at 20 and 27)

--seed S seeds both the SYNTH data and the training. Work goes to
output/bench/synth_accuracy/<budget>_seed<S>/ (the data beside it, shared by all
configurations). An interrupted run goes on with --continue: finished configurations are reused
and the unfinished one continues from its newest snapshot (one epoch lost at most).

The results (also written as JSON, a text table and a chart) hold, per configuration, the
metrics, PA-MPJPE per occlusion bucket, the validation curve, the training time (summed over the
epochs of every sitting), and the paired comparison with the baseline: the mean per-frame
PA-MPJPE difference (configuration minus baseline, mm; negative is better) with a bootstrap 95 %
interval over evaluation frames, overall and per bucket.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from checkpoints import list_snapshots, load_checkpoint  # noqa: E402
from config import ROOT  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from quickstart import mean_pose_errors, run, synth_ready  # noqa: E402
from run_all import machine  # noqa: E402
from utils.files import output_file, write_atomically  # noqa: E402
from utils.metrics import OCCLUSION_BUCKETS  # noqa: E402

ALL_OFF = dict(use_seg=False, use_iet=False, use_cgblock=False, use_let=False)
CONFIGS = {
    'InteractHand': {},
    'baseline': ALL_OFF,
    'no_seg': dict(use_seg=False),
    'no_iet': dict(use_iet=False),
    'no_cgblock': dict(use_cgblock=False),
    'no_let': dict(use_let=False),
    'image_branch': dict(hand_branch='image'),
}
BUDGETS = {
    'short': dict(num_train=2000, num_eval=500, end_epoch=12, lr_dec_epoch='8,11', val_every=0),
    'medium': dict(num_train=6000, num_eval=1000, per_bucket=200, end_epoch=12, lr_dec_epoch='8,11',
                   val_every=2),
    'long': dict(num_train=6000, num_eval=1000, end_epoch=30, lr_dec_epoch='20,27', val_every=5),
}
BUCKET_KEYS = {name: name.rstrip('%') for name, _, _ in OCCLUSION_BUCKETS}   # '0-20%' -> '0-20'
MIN_PER_BUCKET = 150
BOOTSTRAP = 10000


# ----------------------------------------------------------------------------------------------
# Data

def stratify(root: Path, per_bucket: int, seed: int) -> dict[str, int]:
    """Keep the first ``per_bucket`` evaluation frames of each occlusion bucket (frame order) in
    ``SYNTH_evaluation_data.json``; the full list stays in ``SYNTH_evaluation_pool.json``.
    Returns the frames per bucket; fewer than MIN_PER_BUCKET in a bucket is a UserError."""
    ann_dir = root / 'annotations'
    pool_file, eval_file = ann_dir / 'SYNTH_evaluation_pool.json', ann_dir / 'SYNTH_evaluation_data.json'
    if not pool_file.is_file():
        eval_file.rename(pool_file)
    pool = json.loads(pool_file.read_text())
    kept, counts = [], {}
    for name, low, high in OCCLUSION_BUCKETS:
        ids = [a['image_id'] for a in pool['annotations'] if low <= a['occlusion'] < high][:per_bucket]
        if len(ids) < MIN_PER_BUCKET:
            raise UserError(f'{pool_file} has only {len(ids)} frames with occlusion {name}; generate more '
                            f'evaluation frames (BUDGETS in {Path(__file__).name})')
        counts[BUCKET_KEYS[name]] = len(ids)
        kept += ids
    kept = set(kept)
    subset = {**pool, 'images': [i for i in pool['images'] if i['id'] in kept],
              'annotations': [a for a in pool['annotations'] if a['image_id'] in kept]}
    subset['info'] = {**pool['info'], 'stratified': {'pool': len(pool['images']), 'per_bucket': per_bucket,
                                                     'seed': seed}}
    text = json.dumps(subset)
    write_atomically(eval_file, lambda tmp: tmp.write_text(text))
    return counts


def prepare_data(budget: dict, seed: int, root: Path) -> Path:
    """Generate the budget's SYNTH set under ``root`` unless it is there (stratified for the
    medium budget); returns ``root``."""
    per_bucket = budget.get('per_bucket')
    eval_file = root / 'annotations' / 'SYNTH_evaluation_data.json'
    if eval_file.is_file() and per_bucket and (root / 'annotations' / 'SYNTH_train_data.json').is_file():
        info = json.loads(eval_file.read_text()).get('info', {})
        if info.get('seed') == seed and info.get('stratified', {}).get('per_bucket') == per_bucket:
            print(f'=== SYNTH data: reusing {root}')
            return root
    if per_bucket is None and synth_ready(root, budget['num_train'], budget['num_eval'], seed):
        print(f'=== SYNTH data: reusing {root}')
        return root
    (root / 'annotations' / 'SYNTH_evaluation_pool.json').unlink(missing_ok=True)
    run('generate SYNTH', ['data/SYNTH/generate.py', '--num-train', budget['num_train'],
                           '--num-eval', budget['num_eval'], '--seed', seed, '--out', root])
    if per_bucket:
        print(f'evaluation frames kept per occlusion bucket: {stratify(root, per_bucket, seed)}')
    return root


# ----------------------------------------------------------------------------------------------
# Training and testing

def train_and_test(name: str, budget: dict, seed: int, data: Path, out: Path) -> dict:
    """Train configuration ``name`` (going on from its newest snapshot if there is one) and test
    it; returns its metrics, training minutes, validation curve and per-frame errors."""
    run_dir = out / name
    result_file = run_dir / 'bench_result.json'
    if result_file.is_file():
        print(f'\n=== {name}: reusing {result_file}')
        return json.loads(result_file.read_text())
    epochs = budget['end_epoch']
    sets = [f'output_dir={run_dir}', f'synth_root={data}', f'end_epoch={epochs}',
            f'lr_dec_epoch={budget["lr_dec_epoch"]}', 'testset=SYNTH', f'val_every={budget["val_every"]}']
    sets += [f'{k}={v}' for k, v in CONFIGS[name].items()]
    common = ['--gpu', 'cpu', '--preset', 'cpu', '--set', *sets]
    if epochs not in list_snapshots(run_dir / 'model_dump'):
        run(f'train {name}', ['main/train.py', *common, '--trainset', 'SYNTH', '--seed', seed, '--continue'])
    run(f'test {name}', ['main/test.py', *common, '--test_epoch', epochs])
    metrics = json.loads((run_dir / 'result' / f'metrics_SYNTH_{epochs}.json').read_text())
    with np.load(run_dir / 'result' / f'predictions_SYNTH_{epochs}.npz') as npz:
        per_frame = (npz['error_pa_mpjpe'] * 1000.0).tolist()
        occlusion = npz['occlusion'].tolist()
    history = load_checkpoint(run_dir / 'model_dump' / f'snapshot_{epochs}.pth.tar')['history']
    seconds = [h.get('seconds') for h in history]      # every sitting's epochs; None: older snapshots
    by_bucket = metrics['pa_mpjpe_by_occlusion']
    result = {
        'switches': CONFIGS[name], 'pa_mpjpe': metrics['pa_mpjpe'], 'pa_mpvpe': metrics['pa_mpvpe'],
        'f5': metrics['f5'], 'f15': metrics['f15'], 'mpjpe': metrics['mpjpe'],
        'seg_iou': metrics.get('seg_iou_hand'), 'train_minutes': None if None in seconds else sum(seconds) / 60,
        'buckets': {BUCKET_KEYS[b]: {'pa_mpjpe': v['pa_mpjpe'], 'n': v['count']} for b, v in by_bucket.items()},
        'val_curve': [{'epoch': h['epoch'], 'pa_mpjpe': h['val_pa_mpjpe']} for h in history if 'val_pa_mpjpe' in h],
        'per_frame_pa_mpjpe': per_frame, 'occlusion': occlusion,
    }
    write_atomically(result_file, lambda tmp: tmp.write_text(json.dumps(result)))
    return result


# ----------------------------------------------------------------------------------------------
# Comparison

def bootstrap_interval(diff: np.ndarray, rng: np.random.Generator, n: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``diff`` (N,) over ``n`` resamples of its frames."""
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_comparison(config: dict, base: dict, seed: int = 0) -> dict:
    """Per-frame PA-MPJPE of ``config`` minus ``base`` (the same frames, mm): mean and bootstrap
    95 % interval, overall and per occlusion bucket."""
    a, b = np.asarray(config['per_frame_pa_mpjpe']), np.asarray(base['per_frame_pa_mpjpe'])
    occ = np.asarray(base['occlusion'])
    if a.shape != b.shape or not np.array_equal(np.asarray(config['occlusion']), occ):
        raise UserError('the configurations were tested on different frames; run them on the same data')
    rng = np.random.default_rng(seed)
    groups = {'overall': np.ones(len(a), bool)}
    groups.update({BUCKET_KEYS[name]: (occ >= low) & (occ < high) for name, low, high in OCCLUSION_BUCKETS})
    out = {}
    for key, sel in groups.items():
        diff = a[sel] - b[sel]
        low, high = bootstrap_interval(diff, rng)
        out[key] = {'mean_diff_mm': float(diff.mean()), 'ci95_mm': [low, high], 'n': int(sel.sum())}
    return out


def minutes(value: float | None) -> str:
    """'38 min', or '-' where the training time is unknown (snapshots written before epochs were timed)."""
    return '-' if value is None else f'{value:.0f} min'


def table(configs: dict[str, dict], mean_pose: float) -> str:
    buckets = list(BUCKET_KEYS.values())
    head = (f'{"configuration":<14} {"PA-MPJPE":>9} {"PA-MPVPE":>9} {"F@5":>6} {"F@15":>6} '
            + ' '.join(f'{"PA " + b:>9}' for b in buckets) + f' {"seg IoU":>8} {"train":>7}'
            + '   vs baseline (mm, 95 % CI)')
    lines = [head, '-' * len(head)]
    for name, r in configs.items():
        cells = ' '.join(f'{r["buckets"][b]["pa_mpjpe"]:9.2f}' for b in buckets)
        iou = f'{r["seg_iou"]:8.3f}' if r.get('seg_iou') is not None else f'{"-":>8}'
        cmp = r.get('vs_baseline', {}).get('overall')
        vs = f'   {cmp["mean_diff_mm"]:+.2f} [{cmp["ci95_mm"][0]:+.2f}, {cmp["ci95_mm"][1]:+.2f}]' if cmp else ''
        lines.append(f'{name:<14} {r["pa_mpjpe"]:9.2f} {r["pa_mpvpe"]:9.2f} {r["f5"]:6.3f} {r["f15"]:6.3f} '
                     f'{cells} {iou} {minutes(r["train_minutes"]):>7}{vs}')
    counts = next(iter(configs.values()))['buckets']
    lines.append('(errors in mm; evaluation frames per occlusion bucket: '
                 + ', '.join(f'{b} {counts[b]["n"]}' for b in buckets)
                 + f'; predicting the training mean pose: PA-MPJPE {mean_pose:.2f} mm)')
    return '\n'.join(lines)


def fmt_ci(cmp: dict) -> str:
    """'-0.12 [-0.20, -0.04]' from a paired comparison entry."""
    low, high = cmp['ci95_mm']
    return f'{cmp["mean_diff_mm"]:+.2f} [{low:+.2f}, {high:+.2f}]'


def pooled_comparison(runs: list[dict], name: str) -> dict | None:
    """The paired comparison of ``name`` with the baseline over the frames of every run (seed)
    that has it: per-frame differences within each run, pooled; None when no run has it, or when
    one lacks the per-frame errors."""
    a, b, occ = [], [], []
    for r in runs:
        c, base = r['configs'].get(name), r['configs'].get('baseline')
        if c is None:
            continue
        if base is None or 'per_frame_pa_mpjpe' not in c or 'eval_occlusion' not in r:
            return None
        a += c['per_frame_pa_mpjpe']
        b += base['per_frame_pa_mpjpe']
        occ += r['eval_occlusion']
    if not a:
        return None
    return paired_comparison({'per_frame_pa_mpjpe': a, 'occlusion': occ}, {'per_frame_pa_mpjpe': b, 'occlusion': occ})


def load_results(paths: list[Path]) -> list[dict]:
    """The results files written by --json, in the order given."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f'cannot read results file {path} ({err}); pass files written by --json') from None
    return runs


def report(runs: list[dict]) -> str:
    """A Markdown table of results files (``load_results``, one per seed): per configuration and
    seed, PA-MPJPE overall and per occlusion bucket, with the paired difference from the baseline
    and its interval; the mean over seeds ± half the spread (max - min) between them; and the
    paired comparison with every seed's frames pooled."""
    groups = ['overall', *BUCKET_KEYS.values()]
    head = ('| configuration | seed | ' + ' | '.join(f'PA-MPJPE {g}' for g in groups)
            + ' | vs baseline, all | vs baseline, >40 % | F@5 | seg IoU | training |')
    lines = [head, '|' + ' --- |' * (head.count('|') - 1)]
    names = list(dict.fromkeys(n for r in runs for n in r['configs']))
    for name in names:
        values = []
        for r in runs:
            c = r['configs'].get(name)
            if c is None:
                continue
            row = [c['pa_mpjpe'], *(c['buckets'][b]['pa_mpjpe'] for b in BUCKET_KEYS.values())]
            values.append(row)
            vs = c.get('vs_baseline')
            iou = f'{c["seg_iou"]:.3f}' if c.get('seg_iou') is not None else '-'
            lines.append(f'| {name} | {r["seed"]} | ' + ' | '.join(f'{v:.2f}' for v in row)
                         + f' | {fmt_ci(vs["overall"]) if vs else "-"} | {fmt_ci(vs[">40"]) if vs else "-"}'
                         + f' | {c["f5"]:.3f} | {iou} | {minutes(c["train_minutes"])} |')
        if len(values) > 1:
            v = np.array(values)
            cells = ' | '.join(f'{m:.2f} ± {(hi - lo) / 2:.2f}' for m, lo, hi in zip(v.mean(0), v.min(0), v.max(0)))
            lines.append(f'| **{name}** | mean ± half spread | {cells} | | | | | |')
    if len(runs) > 1:
        lines += ['', '| configuration vs baseline, its seeds pooled | ' + ' | '.join(groups) + ' |',
                  '| --- |' + ' --- |' * len(groups)]
        for name in names[1:] if names[0] == 'baseline' else names:
            pooled = pooled_comparison(runs, name)
            if pooled:
                lines.append(f'| {name} ({pooled["overall"]["n"]} frames) | '
                             + ' | '.join(fmt_ci(pooled[g]) for g in groups) + ' |')
    pose = ', '.join(f'seed {r["seed"]}: {r["mean_pose_pa_mpjpe"]:.2f}' for r in runs)
    lines.append('')
    lines.append(f'PA-MPJPE in mm; predicting the training mean pose: {pose} mm. "vs baseline": the mean '
                 'per-frame difference from the baseline on the same frames, with its bootstrap 95 % interval.')
    return '\n'.join(lines)


def chart(runs: list[dict], path: Path, title: str) -> None:
    """Two panels from results files (one per seed): left, PA-MPJPE per configuration and
    occlusion bucket (a dot per seed, a bar over their range, the mean marked; the training mean
    pose dashed); right, each configuration minus the baseline with every seed's frames pooled,
    with its bootstrap 95 % interval (below 0 is better)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = ['overall', *BUCKET_KEYS.values()]
    labels = ['all frames', *[f'occl. {g} %' for g in BUCKET_KEYS.values()]]
    names = list(dict.fromkeys(n for r in runs for n in r['configs']))
    colours = {n: f'C{i}' for i, n in enumerate(names)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110, gridspec_kw={'width_ratios': [3, 2]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        x = np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width
        values = np.array([[r['configs'][name]['pa_mpjpe'], *(r['configs'][name]['buckets'][g]['pa_mpjpe']
                                                                for g in BUCKET_KEYS.values())]
                           for r in runs if name in r['configs']])                     # (seeds, groups)
        left.vlines(x, values.min(0), values.max(0), colours[name], linewidth=6, alpha=0.35)
        left.plot(np.broadcast_to(x, values.shape).ravel(), values.ravel(), 'o', color=colours[name], ms=4)
        left.plot(x, values.mean(0), '_', color=colours[name], ms=16, mew=2,
                  label=f'{name} ({len(values)} seed{"s" if len(values) > 1 else ""})')
    pose = np.mean([r['mean_pose_pa_mpjpe'] for r in runs])
    left.axhline(pose, color='grey', linestyle='--', linewidth=1, label=f'training mean pose ({pose:.2f})')
    left.set_xticks(np.arange(len(groups)), labels)
    left.set_ylabel('PA-MPJPE (mm, lower is better)')
    left.legend(fontsize=8)
    left.grid(axis='y', alpha=0.3)
    others = [n for n in names if n != 'baseline']
    width = 0.8 / max(len(others), 1)
    for i, name in enumerate(others):
        pooled = pooled_comparison(runs, name)
        if pooled is None:
            continue
        x = np.arange(len(groups)) + (i - (len(others) - 1) / 2) * width
        mean = np.array([pooled[g]['mean_diff_mm'] for g in groups])
        ci = np.array([pooled[g]['ci95_mm'] for g in groups])                          # (groups, 2)
        right.errorbar(x, mean, yerr=[mean - ci[:, 0], ci[:, 1] - mean], fmt='o', color=colours[name],
                       capsize=4, label=f'{name} - baseline ({pooled["overall"]["n"]} frames)')
    right.axhline(0, color='black', linewidth=1)
    right.set_xticks(np.arange(len(groups)), labels)
    right.set_ylabel('per-frame difference (mm, 95 % interval)')
    right.legend(fontsize=8)
    right.grid(axis='y', alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--budget', choices=sorted(BUDGETS), default='medium')
    parser.add_argument('--seed', type=int, default=1, help='seed of the SYNTH data and the training (default 1)')
    parser.add_argument('--only', nargs='+', choices=list(CONFIGS), metavar='NAME',
                        help=f'run only these configurations (of {", ".join(CONFIGS)}); baseline is '
                        'always included, as every comparison needs it')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the results to this JSON file')
    parser.add_argument('--continue', dest='resume', action='store_true',
                        help='go on with an interrupted run: reuse finished configurations, continue '
                        'the unfinished one from its newest snapshot')
    parser.add_argument('--report', nargs='+', type=Path, metavar='JSON',
                        help='only print a Markdown table of these results files (one per seed)')
    parser.add_argument('--plot', type=Path, metavar='PNG', help='with --report: also draw its chart to this file')
    args = parser.parse_args()
    if args.plot and not args.report:
        raise UserError('--plot draws the chart of --report; give the results files with --report')
    if args.report:
        runs = load_results(args.report)
        print(report(runs))
        if args.plot:
            seeds = ', '.join(str(r['seed']) for r in runs)
            chart(runs, output_file(args.plot, '--plot'),
                  f'SYNTH, {runs[0]["budget"]} budget, seed{"s" if len(runs) > 1 else ""} {seeds}')
        return
    if args.json:
        output_file(args.json, '--json')
    if args.seed < 0:
        raise UserError(f'--seed is {args.seed}; give 0 or more')
    budget = BUDGETS[args.budget]
    bench_dir = ROOT / 'output' / 'bench' / 'synth_accuracy'
    out = bench_dir / f'{args.budget}_seed{args.seed}'
    names = list(dict.fromkeys(['baseline', *(args.only or CONFIGS)]))
    started = [n for n in names if (out / n).exists()]
    if started and not args.resume:
        raise UserError(f'{out} already holds runs of {", ".join(started)}; add --continue to go on with '
                        'them, or delete that folder to start again')
    t0 = time.time()
    data = prepare_data(budget, args.seed, bench_dir / f'SYNTH_{args.budget}_seed{args.seed}')
    configs = {n: train_and_test(n, budget, args.seed, data, out) for n in names}
    for name, r in configs.items():
        if name != 'baseline':
            r['vs_baseline'] = paired_comparison(r, configs['baseline'])
    mean_pose = mean_pose_errors(data)[1]
    text = table(configs, mean_pose)
    print('\n' + text)
    counts = next(iter(configs.values()))['buckets']
    summary = {
        'budget': args.budget, 'seed': args.seed, 'preset': 'cpu',
        'num_train': budget['num_train'], 'num_eval': sum(c['n'] for c in counts.values()),
        'eval_per_bucket': {b: c['n'] for b, c in counts.items()},
        'end_epoch': budget['end_epoch'], 'lr_dec_epoch': budget['lr_dec_epoch'],
        'mean_pose_pa_mpjpe': mean_pose, 'machine': machine(),
        'date': time.strftime('%Y-%m-%d'), 'wall_seconds_this_sitting': time.time() - t0,
        'eval_occlusion': [round(v, 4) for v in configs['baseline']['occlusion']],
        'configs': {n: {**{k: v for k, v in r.items() if k not in ('per_frame_pa_mpjpe', 'occlusion')},
                        'per_frame_pa_mpjpe': [round(v, 4) for v in r['per_frame_pa_mpjpe']]}
                    for n, r in configs.items()},
    }
    text_json = json.dumps(summary, indent=1)
    out.mkdir(parents=True, exist_ok=True)
    for path in (out / 'synth_accuracy.json', args.json):
        if path is not None:
            write_atomically(path, lambda tmp: tmp.write_text(text_json + '\n'))
    (out / 'synth_accuracy.txt').write_text(text + '\n')
    chart([summary], out / 'synth_accuracy.png',
              f'SYNTH, {args.budget} budget, seed {args.seed}: {budget["num_train"]} training frames, '
              f'{budget["end_epoch"]} epochs, cpu preset')
    print(f'written: {out / "synth_accuracy.json"}' + (f', {args.json}' if args.json else '')
          + f', {out / "synth_accuracy.png"}')


if __name__ == '__main__':
    run_cli(main)
