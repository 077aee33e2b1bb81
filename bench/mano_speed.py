"""MANO layer forward time at batch 1, 64 and 1024, beside smplx's MANO on the same model.

    python bench/mano_speed.py [--repeats 20] [--json PATH]

Targets (issue 2): never slower than smplx at the same batch, at least 1.5x faster at batch 1024.
"""
import argparse
import json
import pickle
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import torch  # noqa: E402

from errors import run_cli  # noqa: E402
from timing import interleaved_ms  # noqa: E402
from utils.files import output_file  # noqa: E402
from utils.mano import ManoLayer, load_hand_model  # noqa: E402

BATCHES = (1, 64, 1024)


def median_ms(calls: dict[str, Callable[[], object]], repeats: int,
              device: torch.device) -> dict[str, float]:
    """Median wall time of each call in milliseconds over ``repeats`` interleaved rounds."""
    times = interleaved_ms(calls, device, repeats, warmup=3)
    return {name: statistics.median(t) for name, t in times.items()}


def smplx_layer(arrays: dict, device: torch.device):
    """smplx's MANO on the same arrays (written to a temporary plain pickle), or None."""
    try:
        import smplx
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'MANO_RIGHT.pkl'
        path.write_bytes(pickle.dumps(arrays, protocol=2))
        layer = smplx.MANO(str(path), is_rhand=True, use_pca=False, flat_hand_mean=False)
    return layer.to(device)


def bench_device(device: torch.device, repeats: int) -> list[dict]:
    ours = ManoLayer().to(device)
    theirs = smplx_layer(load_hand_model().arrays, device)
    rows = []
    for b in BATCHES:
        g = torch.Generator().manual_seed(b)
        pose = (torch.randn(b, 48, generator=g) * 0.5).to(device)
        shape = torch.randn(b, 10, generator=g).to(device)
        calls = {'ours': lambda: ours(pose, shape)}
        if theirs is not None:
            calls['smplx'] = lambda: theirs(betas=shape, global_orient=pose[:, :3], hand_pose=pose[:, 3:])
        with torch.inference_mode():
            times = median_ms(calls, repeats * (5 if b < 1024 else 1), device)
        t_ours, t_smplx = times['ours'], times.get('smplx')
        rows.append({'device': device.type, 'batch': b, 'ours_ms': t_ours, 'smplx_ms': t_smplx,
                     'speedup': t_smplx / t_ours if t_smplx else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=20,
                        help='timed calls per layer at batch 1024 (5x as many at batch 1 and 64)')
    parser.add_argument('--json', type=Path, help='also write the results here')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    devices = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in bench_device(d, args.repeats)]
    print(f"{'device':6} {'batch':>6} {'ours ms':>9} {'smplx ms':>9} {'speed-up':>9}")
    for r in rows:
        smplx_ms = f"{r['smplx_ms']:9.3f}" if r['smplx_ms'] else f"{'n/a':>9}"
        speedup = f"{r['speedup']:8.2f}x" if r['speedup'] else f"{'n/a':>9}"
        print(f"{r['device']:6} {r['batch']:6d} {r['ours_ms']:9.3f} {smplx_ms} {speedup}")
    if args.json:
        args.json.write_text(json.dumps({'torch_threads': torch.get_num_threads(), 'rows': rows}, indent=1))


if __name__ == '__main__':
    run_cli(main)
