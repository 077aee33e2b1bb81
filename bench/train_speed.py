"""Training-step speed: where a step's time goes, and what channels-last memory format, a fused
Adam step and ``torch.compile`` change.

    python bench/train_speed.py [--preset cpu|paper] [--gpu cpu|0] [--batch 16] [--repeats 15]
                                [--compile] [--profile] [--json PATH]

One training step (forward, backward, optimizer step) of InteractHand as the preset configures it,
on random inputs of the right shapes (speed does not depend on the values), in each variant;
the variants take turns, round after round (bench/timing.py), and the median step time is
reported with samples/s. ``--compile`` adds ``torch.compile`` variants (slow to build on a CPU).
``--profile`` prints the operators that take the most time in the plain variant
(torch.profiler). The data pipeline is not included: bench/data_speed.py measures it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402

import torch  # noqa: E402

from config import Config, add_common_args, args_overrides, parse_gpu  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from model import Model  # noqa: E402
from runtime import select_device  # noqa: E402
from speed import random_batch  # noqa: E402
from timing import interleaved_ms  # noqa: E402
from training import make_optimizer, prepare_model  # noqa: E402
from utils.files import output_file  # noqa: E402

VARIANTS = {  # name: (config fields, fused Adam)
    'no hand localiser': ({'localiser_size': 0}, True),
    'plain, foreach Adam': ({'channels_last': False}, False),
    'plain, fused Adam': ({'channels_last': False}, True),
    'channels_last, foreach Adam': ({'channels_last': True}, False),
    'channels_last, fused Adam': ({'channels_last': True}, True),
}
COMPILED = {
    'compile, fused Adam': ({'channels_last': False, 'compile': True}, True),
    'compile + channels_last, fused Adam': ({'channels_last': True, 'compile': True}, True),
}


def step_fn(conf: Config, fused: bool, batch: int, device: torch.device):
    """A closure running one training step of a fresh model built from ``conf``."""
    torch.manual_seed(0)
    model = prepare_model(Model(conf, pretrained=False).to(device).train(), conf)
    optimizer = make_optimizer(model, conf, device, fused=fused)
    inputs, targets = random_batch(batch, conf.input_img_shape[0], device, conf.localiser_size)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        sum(model(inputs, targets, {}, 'train').values()).backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('--batch', type=int, default=16, help='batch size (default 16)')
    parser.add_argument('--repeats', type=int, default=15, help='timed rounds (default 15)')
    parser.add_argument('--compile', action='store_true', help='also time torch.compile variants')
    parser.add_argument('--profile', action='store_true', help='print the top operators of the plain variant')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the figures to this JSON file')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.batch < 1 or args.repeats < 1:
        raise UserError('--batch and --repeats must be at least 1')
    settings = {'preset': args.preset or 'cpu', **args_overrides(args), 'pretrained': False}
    device, _ = select_device(parse_gpu(args.gpu))
    variants = {**VARIANTS, **(COMPILED if args.compile else {})}
    steps = {name: step_fn(Config().update(**settings, **fields), fused, args.batch, device)
             for name, (fields, fused) in variants.items()}
    times = interleaved_ms(steps, device, args.repeats, warmup=3)
    load = os.getloadavg()[0]
    print(f'training step, preset {settings["preset"]}, batch {args.batch}, device {device}, '
          f'{torch.get_num_threads()} threads, load average {load:.2f}; median of {args.repeats} interleaved rounds')
    base = statistics.median(times['plain, foreach Adam'])
    rows = {}
    for name, t in times.items():
        ms = statistics.median(t)
        rows[name] = {'median_ms': ms, 'samples_per_s': args.batch * 1e3 / ms, 'speed_up': base / ms}
        print(f'  {name:<38} {ms:8.1f} ms  {args.batch * 1e3 / ms:7.1f} samples/s  x{base / ms:.2f}')
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        step = steps['plain, foreach Adam']
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))
    if args.json:
        args.json.write_text(json.dumps({'settings': settings, 'batch': args.batch, 'device': str(device),
                                         'load_average': load, 'variants': rows}, indent=2) + '\n')


if __name__ == '__main__':
    run_cli(main)
