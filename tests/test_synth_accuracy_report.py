"""The comparison side of bench/synth_accuracy.py: the paired per-frame difference from the
baseline with its bootstrap interval, the pooling of seeds, the Markdown report over results
files and its chart, checked against direct NumPy computations on made-up results files."""
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from errors import UserError

ROOT = Path(__file__).resolve().parents[1]
EDGES = {'0-20': (0.0, 0.2), '20-40': (0.2, 0.4), '>40': (0.4, 2.0)}


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('synth_accuracy_bench', ROOT / 'bench' / 'synth_accuracy.py')
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    sys.path.insert(0, str(ROOT / 'bench'))          # as python puts the script's folder (run_all)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def config_result(errors: np.ndarray, occlusion: np.ndarray) -> dict:
    """One configuration's entry of a results file, from per-frame PA-MPJPE (N,) and occlusion (N,)."""
    buckets = {k: {'pa_mpjpe': float(errors[(occlusion >= lo) & (occlusion < hi)].mean()),
                   'n': int(((occlusion >= lo) & (occlusion < hi)).sum())} for k, (lo, hi) in EDGES.items()}
    return {'pa_mpjpe': float(errors.mean()), 'buckets': buckets, 'f5': 0.5, 'seg_iou': None,
            'train_minutes': 40.0, 'per_frame_pa_mpjpe': errors.tolist()}


def results_file(seed: int, n: int = 300, gain: float = 0.5) -> dict:
    """A results file of two configurations on ``n`` frames; InteractHand is ``gain`` mm better
    on average, less so as occlusion grows."""
    rng = np.random.default_rng(seed)
    occ = rng.uniform(0, 0.7, n)
    base = 10 + rng.normal(0, 1, n)
    ours = base - gain * (1 - occ) + rng.normal(0, 0.5, n)
    return {'budget': 'medium', 'seed': seed, 'mean_pose_pa_mpjpe': 11.4 + seed / 10,
            'eval_occlusion': occ.tolist(),
            'configs': {'baseline': config_result(base, occ), 'InteractHand': config_result(ours, occ)}}


def test_paired_comparison_is_the_mean_difference_per_bucket(bench):
    run = results_file(1)
    occ = np.array(run['eval_occlusion'])
    a, b = (dict(run['configs'][n], occlusion=occ.tolist()) for n in ('InteractHand', 'baseline'))
    cmp = bench.paired_comparison(a, b)
    diff = np.array(a['per_frame_pa_mpjpe']) - np.array(b['per_frame_pa_mpjpe'])
    groups = {'overall': np.ones(len(diff), bool), **{k: (occ >= lo) & (occ < hi) for k, (lo, hi) in EDGES.items()}}
    for key, sel in groups.items():
        assert cmp[key]['n'] == sel.sum()
        assert cmp[key]['mean_diff_mm'] == pytest.approx(diff[sel].mean())
        low, high = cmp[key]['ci95_mm']
        half = 1.96 * diff[sel].std(ddof=1) / np.sqrt(sel.sum())        # the normal interval, for scale
        assert low < diff[sel].mean() < high
        assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_paired_comparison_refuses_different_frames(bench):
    run = results_file(1)
    occ = run['eval_occlusion']
    a = dict(run['configs']['InteractHand'], occlusion=occ)
    b = dict(run['configs']['baseline'], occlusion=occ[::-1])
    with pytest.raises(UserError, match='different frames'):
        bench.paired_comparison(a, b)


def test_pooled_comparison_concatenates_the_seeds(bench):
    runs = [results_file(1), results_file(2, n=200)]
    pooled = bench.pooled_comparison(runs, 'InteractHand')
    diff = np.concatenate([np.subtract(r['configs']['InteractHand']['per_frame_pa_mpjpe'],
                                       r['configs']['baseline']['per_frame_pa_mpjpe']) for r in runs])
    occ = np.concatenate([r['eval_occlusion'] for r in runs])
    assert pooled['overall']['n'] == 500 and pooled['overall']['mean_diff_mm'] == pytest.approx(diff.mean())
    sel = occ >= 0.4
    assert pooled['>40']['n'] == sel.sum() and pooled['>40']['mean_diff_mm'] == pytest.approx(diff[sel].mean())
    alone = bench.pooled_comparison([runs[0], {**runs[1], 'configs': {'baseline': runs[1]['configs']['baseline']}}],
                                    'InteractHand')
    assert alone['overall']['n'] == 300 and alone['overall']['mean_diff_mm'] == pytest.approx(diff[:300].mean())
    assert bench.pooled_comparison(runs, 'no_seg') is None
    del runs[1]['configs']['InteractHand']['per_frame_pa_mpjpe']
    assert bench.pooled_comparison(runs, 'InteractHand') is None


def test_report_gives_each_seed_the_mean_and_the_half_spread(bench, tmp_path):
    runs = [results_file(1), results_file(2, gain=1.0)]
    paths = []
    for r in runs:
        r['configs']['InteractHand']['vs_baseline'] = bench.paired_comparison(
            dict(r['configs']['InteractHand'], occlusion=r['eval_occlusion']),
            dict(r['configs']['baseline'], occlusion=r['eval_occlusion']))
        paths.append(tmp_path / f'seed{r["seed"]}.json')
        paths[-1].write_text(json.dumps(r))
    text = bench.report(bench.load_results(paths))
    values = [r['configs']['InteractHand']['pa_mpjpe'] for r in runs]
    assert f'| InteractHand | 1 | {values[0]:.2f} |' in text and f'| InteractHand | 2 | {values[1]:.2f} |' in text
    mean_row = next(line for line in text.splitlines() if line.startswith('| **InteractHand** |'))
    assert f'{np.mean(values):.2f} ± {abs(values[0] - values[1]) / 2:.2f}' in mean_row
    pooled_row = next(line for line in text.splitlines() if line.startswith('| InteractHand (600 frames) |'))
    assert f'{bench.pooled_comparison(runs, "InteractHand")["overall"]["mean_diff_mm"]:+.2f}' in pooled_row
    assert 'seed 1: 11.50, seed 2: 11.60' in text


def test_report_names_an_unreadable_results_file(bench, tmp_path):
    bad = tmp_path / 'broken.json'
    bad.write_text('{"seed": 1,')
    with pytest.raises(UserError, match='broken.json'):
        bench.load_results([bad])


def test_chart_draws_both_panels(bench, tmp_path, monkeypatch, capsys):
    paths = []
    for seed in (1, 2):
        paths.append(tmp_path / f'seed{seed}.json')
        paths[-1].write_text(json.dumps(results_file(seed)))
    png = tmp_path / 'plots' / 'chart.png'
    monkeypatch.setattr(sys, 'argv', ['synth_accuracy.py', '--report', *map(str, paths), '--plot', str(png)])
    bench.main()
    assert '| **baseline** | mean ± half spread |' in capsys.readouterr().out
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] > image.shape[0]
    assert (image < 128).any(axis=2).mean() > 0.01                   # axes, dots and text were drawn


def test_plot_needs_report(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, 'argv', ['synth_accuracy.py', '--plot', str(tmp_path / 'chart.png')])
    with pytest.raises(UserError, match='--report'):
        bench.main()
