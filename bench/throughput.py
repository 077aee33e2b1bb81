"""Steady-state throughput on real data: the DataLoader alone, training (InteractHand's two hand
branches and the baseline, eager and compiled), and inference latency (eager and CUDA-graphed) at
batch 1 and 64. Made for a GPU (bench/gpu_check.sh runs it); it runs on the CPU too.

    python bench/throughput.py --synth DIR [--preset paper] [--gpu 0] [--amp bf16] [--steps 40]
                               [--warmup 10] [--compile] [--json PATH]

Training runs the real loop (common/training.py: the configured loader with its workers, pinned
memory and non-blocking copies, Trainer.step) on the SYNTH training split in DIR, timing
``--steps`` steps after ``--warmup`` (compilation, cuDNN autotuning and the workers' start fall in
the warm-up). GPU busy is nvidia-smi's utilization, sampled every 200 ms over the timed steps
(n/a without nvidia-smi). Inference: median of 20 calls after 5, random inputs, test mode.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Iterator  # noqa: E402

import torch  # noqa: E402

from config import Config, add_common_args, args_overrides, parse_gpu  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from inference import CudaGraphForward  # noqa: E402
from loaders import to_device  # noqa: E402
from model import Model  # noqa: E402
from runtime import setup_runtime  # noqa: E402
from timing import interleaved_ms, sync  # noqa: E402
from training import Trainer  # noqa: E402
from utils.files import output_file  # noqa: E402

CONFIGS = {
    'interacthand_image': dict(hand_branch='image'),
    'interacthand_feature': dict(hand_branch='feature'),
    'baseline': dict(use_seg=False, use_iet=False, use_cgblock=False, use_let=False),
}
COMPILED = ('interacthand_image', 'baseline')   # --compile: these also compiled (a few minutes each)


@contextmanager
def gpu_utilization(device: torch.device) -> Iterator[list[float]]:
    """Samples of nvidia-smi's GPU utilization (%) while the block runs (an empty list without
    nvidia-smi or CUDA)."""
    samples: list[float] = []
    tool = shutil.which('nvidia-smi')
    if device.type != 'cuda' or tool is None:
        yield samples
        return
    proc = subprocess.Popen([tool, '--query-gpu=utilization.gpu', '--format=csv,noheader,nounits',
                             '-i', str(device.index or 0), '-lms', '200'], stdout=subprocess.PIPE, text=True)
    try:
        yield samples
    finally:
        proc.terminate()
        out, _ = proc.communicate()
        samples += [float(v) for v in out.split() if v.strip().replace('.', '', 1).isdigit()]


def batches(trainer: Trainer) -> Iterator[tuple[dict, dict, dict]]:
    """The training loader's batches, epoch after epoch, without end."""
    epoch = 0
    while True:
        trainer.loader.sampler.set_epoch(epoch)
        yield from trainer.loader
        epoch += 1


def loader_rate(trainer: Trainer, steps: int, warmup: int) -> float:
    """Samples/s of the training loader alone (batches copied to the device, no model)."""
    it = batches(trainer)
    for _ in range(warmup):
        to_device(next(it)[0], trainer.rt.device)
    sync(trainer.rt.device)
    t0, seen = time.perf_counter(), 0
    for _ in range(steps):
        inputs = to_device(next(it)[0], trainer.rt.device)
        seen += inputs['img'].shape[0]
    sync(trainer.rt.device)
    return seen / (time.perf_counter() - t0)


def training_rate(trainer: Trainer, steps: int, warmup: int) -> tuple[float, float | None]:
    """Samples/s of the training loop and the mean GPU utilization (%) over the timed steps."""
    amp = trainer.amp_dtype()
    trainer.model.train()
    it = batches(trainer)

    def run(n: int) -> int:
        seen = 0
        for _ in range(n):
            inputs, targets, meta = (to_device(d, trainer.rt.device) for d in next(it))
            trainer.step(inputs, targets, meta, amp)
            seen += inputs['img'].shape[0]
        return seen

    run(warmup)
    sync(trainer.rt.device)
    with gpu_utilization(trainer.rt.device) as util:
        t0 = time.perf_counter()
        seen = run(steps)
        sync(trainer.rt.device)
        seconds = time.perf_counter() - t0
    return seen / seconds, statistics.mean(util) if util else None


def inference_ms(model: Model, batch: int, size: int, device: torch.device, amp: torch.dtype | None,
                 graphed: bool) -> float:
    """Median wall time (ms) of one test-mode forward pass at ``batch``."""
    forward = CudaGraphForward(model) if graphed else model
    img = torch.rand(batch, 3, size, size, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        times = interleaved_ms({'f': lambda: forward({'img': img}, None, None, 'test')}, device, 20, warmup=5)
    return statistics.median(times['f'])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('--synth', type=Path, required=True, help='a SYNTH folder (data/SYNTH/generate.py)')
    parser.add_argument('--amp', choices=('none', 'bf16', 'fp16'), default='bf16', help='autocast (default bf16)')
    parser.add_argument('--steps', type=int, default=40, help='timed training steps (default 40)')
    parser.add_argument('--warmup', type=int, default=10, help='untimed steps first (default 10)')
    parser.add_argument('--compile', action='store_true',
                        help=f'also train {" and ".join(COMPILED)} with torch.compile')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the figures to this JSON file')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.steps < 1 or args.warmup < 0:
        raise UserError('--steps must be at least 1 and --warmup 0 or more')
    runtime = setup_runtime(parse_gpu(args.gpu))
    device = runtime.device
    settings = {'preset': args.preset or 'paper', **args_overrides(args), 'trainset': 'SYNTH',
                'synth_root': str(args.synth), 'pretrained': False, 'amp': args.amp}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fields in CONFIGS.items():
            for compiled in ((False, True) if args.compile and name in COMPILED else (False,)):
                key = f'{name}{" compiled" if compiled else ""}'
                conf = Config().update(**settings, **fields, compile=compiled, output_dir=f'{tmp}/{key}')
                trainer = Trainer(conf, runtime)
                row = rows.setdefault(key, {})
                if name == 'baseline' and not compiled:
                    rows['data loader alone'] = {'train_samples_per_s': loader_rate(trainer, args.steps, args.warmup)}
                row['train_samples_per_s'], row['gpu_busy_pct'] = training_rate(trainer, args.steps, args.warmup)
                if not compiled:
                    model = Model(conf).to(device).eval()
                    amp = trainer.amp_dtype()
                    size = conf.input_img_shape[0]
                    for batch in (1, 64):
                        row[f'bs{batch}_ms'] = inference_ms(model, batch, size, device, amp, graphed=False)
                        if device.type == 'cuda':
                            row[f'bs{batch}_graphed_ms'] = inference_ms(model, batch, size, device, amp, graphed=True)
                del trainer
    cols = ('train_samples_per_s', 'gpu_busy_pct', 'bs1_ms', 'bs1_graphed_ms', 'bs64_ms', 'bs64_graphed_ms')
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'{name}, preset {settings["preset"]}, amp {args.amp}, {args.steps} timed steps after {args.warmup}')
    print(f'{"":<30}' + ''.join(f'{c:>20}' for c in cols))
    for key, row in rows.items():
        print(f'{key:<30}' + ''.join(f'{row[c]:>20.1f}' if row.get(c) is not None else f'{"-":>20}' for c in cols))
    if args.json:
        args.json.write_text(json.dumps({'device': name, 'settings': settings, 'steps': args.steps,
                                         'warmup': args.warmup, 'rows': rows}, indent=1) + '\n')


if __name__ == '__main__':
    run_cli(main)
