"""Every benchmark in one run (``make bench``), then one summary with the date and the machine.

    python bench/run_all.py [--quick]

Runs speed.py (cpu and paper presets), train_speed.py, mano_speed.py, data_speed.py, a timed
SYNTH generation and, when `make quickstart` has left a snapshot, hand_finding.py, each writing
JSON under output/bench/, and prints the summary (also written to output/bench/summary.md). The accuracy benchmark (synth_accuracy.py, about an hour) is run on its
own. ``--quick`` uses fewer repeats.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from checkpoints import list_snapshots  # noqa: E402
from config import QUICKSTART_DIR, ROOT  # noqa: E402
from errors import UserError, run_cli  # noqa: E402

OUT = ROOT / 'output' / 'bench'
SYNTH_FRAMES = 240


def machine() -> str:
    """CPU model and core count (and the GPU when there is one)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    gpu = f', {torch.cuda.get_device_name(0)}' if torch.cuda.is_available() else ', no GPU'
    return f'{model}, {os.cpu_count()} cores{gpu}'


def run(script: str, *args: str) -> dict:
    """Run one benchmark script with ``--json``; returns what it wrote."""
    out = OUT / f'{Path(script).stem}{"_" + args[1] if args[:1] == ("--preset",) else ""}.json'
    cmd = [sys.executable, str(ROOT / 'bench' / script), *args, '--json', str(out)]
    print(f'\n=== $ {" ".join(cmd[1:])}', flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise UserError(f'{script} failed (see its message above)')
    return json.loads(out.read_text())


def synth_generation() -> dict:
    """Frames per second of data/SYNTH/generate.py on this machine (its default
    number of workers: one per core, at most 8)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / 'data' / 'SYNTH' / 'generate.py'), '--num-train',
               str(SYNTH_FRAMES), '--num-eval', '0', '--seed', '0', '--out', tmp]
        print(f'\n=== $ {" ".join(cmd[1:])}', flush=True)
        t0 = time.time()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise UserError('data/SYNTH/generate.py failed (see its message above)')
        seconds = time.time() - t0
    return {'frames': SYNTH_FRAMES, 'seconds_with_startup': seconds, 'fps_with_startup': SYNTH_FRAMES / seconds}


def summary(results: dict) -> str:
    lines = [f'InteractHand benchmarks, {datetime.date.today().isoformat()}, {machine()}', '']
    for preset in ('cpu', 'paper'):
        s = results[f'speed_{preset}']
        base = s['configs']['baseline']
        lines.append(f'speed.py --preset {preset} ({s["device"]}, matmul {s["matmul_gflops"]:.0f} GFLOP/s, '
                     f'load average {s["load_average"]:.1f}):')
        lines.append(f'  {"config":<22} {"params":>8} {"GFLOPs":>7} {"bs1 ms":>8} {"x base":>7} '
                     f'{"bs16 img/s":>10} {"peak MB":>8} {"matmul %":>8}')
        for name, r in s['configs'].items():
            lines.append(f'  {name:<22} {r["params"] / 1e6:7.2f}M {r["gflops"]:7.2f} {r["latency_ms_bs1"]:8.1f} '
                         f'{r["latency_ms_bs1"] / base["latency_ms_bs1"]:6.2f}x {r["throughput_bs16"]:10.1f} '
                         f'{r["peak_mem_mb"]:8.0f} {100 * r["matmul_share_bs1"]:7.0f}%')
    m = results['mano_speed']
    lines.append('mano_speed.py (forward, ms; smplx MANO on the same model):')
    for r in m['rows']:
        smplx = f'{r["smplx_ms"]:.3f}' if r['smplx_ms'] else 'n/a'
        speedup = f'{r["speedup"]:.2f}x' if r['speedup'] else 'n/a'
        lines.append(f'  {r["device"]} batch {r["batch"]:5d}: ours {r["ours_ms"]:.3f}, smplx {smplx}, speed-up {speedup}')
    d = results['data_speed']['samples_per_s_per_worker']
    lines.append(f'data_speed.py (256 px, augmentation on, one worker): SYNTH {d["synth"]:.0f}, HO3D-format '
                 f'{d["ho3d_format"]:.0f} samples/s (target 80); first pass with silhouette rendering '
                 f'{d["ho3d_first_pass_rendering"]:.0f} samples/s')
    g = results['synth_generation']
    lines.append(f'SYNTH generation: {g["frames"]} frames at {g["fps_with_startup"]:.1f} frames/s including '
                 'process start-up (target 15)')
    t = results['train_speed']
    lines.append(f'train_speed.py (cpu preset, batch {t["batch"]}, median step; load average {t["load_average"]:.1f}):')
    for name, r in t['variants'].items():
        lines.append(f'  {name:<32} {r["median_ms"]:7.1f} ms  {r["samples_per_s"]:6.1f} samples/s  x{r["speed_up"]:.2f}')
    h = results.get('hand_finding')
    if h is None:
        lines.append('hand_finding.py: skipped (no quickstart snapshot; run make quickstart first)')
    else:
        lines.append(f'hand_finding.py ({h["method"]}, {h["frames"]} SYNTH frames): mean IoU {h["mean_iou"]:.3f} '
                     f'(target 0.6), 2D error of its crops {h["err2d_ratio"]:.2f}x that of the annotated box '
                     f'(target 1.3x)')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer repeats (noisier numbers)')
    args = parser.parse_args()
    repeats = ['--repeats', '5' if args.quick else '20']
    OUT.mkdir(parents=True, exist_ok=True)
    results = {
        'speed_cpu': run('speed.py', '--preset', 'cpu', '--gpu', '0', *repeats),
        'speed_paper': run('speed.py', '--preset', 'paper', '--gpu', '0', '--repeats', '3' if args.quick else '8'),
        'mano_speed': run('mano_speed.py', *repeats),
        'data_speed': run('data_speed.py'),
        'synth_generation': synth_generation(),
        'train_speed': run('train_speed.py', '--gpu', 'cpu', '--repeats', '5' if args.quick else '15'),
    }
    if list_snapshots(QUICKSTART_DIR / 'model_dump'):
        results['hand_finding'] = run('hand_finding.py', '--frames', '50' if args.quick else '200')
    text = summary(results)
    (OUT / 'summary.md').write_text(text + '\n')
    (OUT / 'all.json').write_text(json.dumps(results, indent=1))
    print('\n' + text)


if __name__ == '__main__':
    run_cli(main)
