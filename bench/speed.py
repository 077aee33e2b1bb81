"""Speed of InteractHand (image branch, feature branch) beside the one-view baseline.

    python bench/speed.py [--preset cpu|paper] [--json PATH] [--gpu cpu|0] [--repeats N]

Per configuration: trainable parameters, forward GFLOPs at batch 1 (torch.utils.flop_counter; a
multiply-add counts 2), latency at batch 1 (test mode, best of ``--repeats`` runs) and throughput
at batch 16 (best of a quarter as many, at least 3; the configurations taking turns), peak memory
of one training step at batch 16 and, on CUDA, throughput at batch 64 with bf16 autocast and channels_last. It also measures a
large float32 matrix multiply and gives the share of its GFLOP/s each network reaches at batch 1
(``matmul_share_bs1`` in the JSON). Weights are random (pretrained=False): speed does not depend
on them.

On the CPU, peak memory is the peak resident size of a fresh process that runs one training step
(so it includes the ~0.3-0.5 GB of the Python and torch runtime); on CUDA it is the peak of
torch.cuda.max_memory_allocated during the step.

Targets (issue 3): image branch <= 2.2x and feature branch <= 1.3x the baseline's latency; peak
memory < 4 GB at the cpu preset on the CPU and < 20 GB at the paper preset on a CUDA GPU; at the
paper preset, batch-1 forward GFLOP/s >= 60 % of the matmul's; batch-16 throughput >= batch-1.
"""
import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count  # noqa: E402
from tqdm import tqdm  # noqa: E402

from config import Config, add_common_args, args_overrides, parse_gpu  # noqa: E402
from runtime import select_device  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from timing import interleaved_ms, sync  # noqa: E402
from utils.files import output_file  # noqa: E402
from model import Model, parameter_summary  # noqa: E402

CONFIGS = {
    'interacthand_image': dict(hand_branch='image'),
    'interacthand_feature': dict(hand_branch='feature'),
    'baseline': dict(use_seg=False, use_iet=False, use_cgblock=False, use_let=False),
}
SWITCHES_ON = dict(use_seg=True, use_iet=True, use_cgblock=True, use_let=True, hand_branch='image')
TARGET_RATIO = {'interacthand_image': 2.2, 'interacthand_feature': 1.3}
MEM_TARGET_MB = {('cpu', 'cpu'): 4096, ('paper', 'cuda'): 20480}
EFFICIENCY_TARGET = 0.6


def config_of(name: str, settings: dict) -> Config:
    """The config of configuration ``name`` on top of ``settings`` (the preset, as ``preset``, and
    the command-line fields)."""
    return Config().update(**{**settings, **SWITCHES_ON, **CONFIGS[name], 'pretrained': False})


def best_ms(calls: dict[str, Callable[[], object]], device: torch.device,
            repeats: int) -> dict[str, float]:
    """Best wall time of each call over ``repeats`` interleaved rounds, in milliseconds: the
    minimum, not the median, because on a shared machine noise only ever adds time."""
    return {name: min(t) for name, t in interleaved_ms(calls, device, repeats).items()}


def random_batch(b: int, size: int, device: torch.device, frame_size: int = 0) -> tuple[dict, dict]:
    """Inputs and targets of the right shapes (values do not matter for speed); with
    ``frame_size`` > 0 also the hand localiser's whole frames and boxes, as training items carry."""
    targets = {'joints_img': torch.rand(b, 21, 2), 'joints_coord_cam': torch.randn(b, 21, 3) * 0.03,
               'mano_pose': torch.randn(b, 48) * 0.3, 'mano_shape': torch.randn(b, 10),
               'seg': torch.randint(0, 3, (b, size // 4, size // 4))}
    inputs = {'img': torch.rand(b, 3, size, size)}
    if frame_size:
        inputs['frame'] = torch.rand(b, 3, frame_size, frame_size)
        targets['frame_box'] = torch.cat([torch.rand(b, 2) * 0.6, 0.1 + torch.rand(b, 2) * 0.3], 1)
    return ({k: v.to(device) for k, v in inputs.items()}, {k: v.to(device) for k, v in targets.items()})


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def forward_gflops(model: Model, size: int, device: torch.device) -> float:
    """Forward FLOPs at batch 1 (test mode), in GFLOPs."""
    inputs, _ = random_batch(1, size, device)
    # The counter has no formula for the CPU flash-attention kernel; count it like the CUDA ones.
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops})
    with torch.inference_mode(), counter:
        model(inputs, None, None, 'test')
    return counter.get_total_flops() / 1e9


def train_step(model: Model, batch: int, size: int, device: torch.device) -> None:
    inputs, targets = random_batch(batch, size, device)
    model.train()
    model.zero_grad(set_to_none=True)
    sum(model(inputs, targets, {}, 'train').values()).backward()


def _cpu_peak_child(fields: dict, batch: int, queue) -> None:
    """In a fresh process: one training step of the network ``fields`` describe; reports the
    peak resident size in MB."""
    torch.set_num_threads(queue.get())
    conf = Config().update(**fields)
    train_step(Model(conf), batch, conf.input_img_shape[0], torch.device('cpu'))
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # kB on Linux


def peak_train_mb(name: str, model: Model, fields: dict, batch: int, device: torch.device) -> float:
    """Peak memory of one training step of ``model`` (described by the config ``fields``), in MB."""
    size = fields['input_img_shape'][0]
    if device.type == 'cuda':
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        train_step(model, batch, size, device)
        sync(device)
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    queue.put(torch.get_num_threads())
    proc = ctx.Process(target=_cpu_peak_child, args=(fields, batch, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f'the peak-memory process for {name} failed (exit code {proc.exitcode})')
    return queue.get()


def matmul_gflops(device: torch.device, n: int) -> float:
    """GFLOP/s of an n x n float32 matrix multiply."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    ms = best_ms({'mm': lambda: a @ b}, device, repeats=10)['mm']
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def measure(settings: dict, device: torch.device, repeats: int) -> dict[str, dict]:
    """Every figure for every configuration (on top of ``settings``, see :func:`config_of`);
    timings interleave the configurations."""
    models, fields, rows = {}, {}, {}
    for name in CONFIGS:
        conf = config_of(name, settings)
        models[name] = Model(conf).to(device).eval()
        fields[name] = conf.to_dict()
    size = conf.input_img_shape[0]
    steps = tqdm(total=4 + len(CONFIGS), desc='measuring', file=sys.stderr)
    for name, model in models.items():
        rows[name] = {'params': sum(p.numel() for p in model.parameters() if p.requires_grad),
                      'gflops': forward_gflops(model, size, device)}
    steps.update()
    few = max(3, repeats // 4)
    with torch.inference_mode():
        for key, batch, n, rounds in (('latency_ms_bs1', 1, None, repeats),
                                      ('throughput_bs16', 16, 16, few)):
            inputs, _ = random_batch(batch, size, device)
            times = best_ms({name: partial(model, inputs, None, None, 'test')
                             for name, model in models.items()}, device, rounds)
            for name, ms in times.items():
                rows[name][key] = ms if n is None else n * 1e3 / ms
            steps.update()
    for name, model in models.items():
        rows[name]['peak_mem_mb'] = peak_train_mb(name, model, fields[name], 16, device)
        rows[name]['summary'] = parameter_summary(model)
        steps.update()
    if device.type == 'cuda':  # last: the conversion must happen outside inference mode
        big = {'img': torch.rand(64, 3, size, size, device=device).contiguous(
            memory_format=torch.channels_last)}
        cl = {name: model.to(memory_format=torch.channels_last) for name, model in models.items()}
        with torch.inference_mode(), torch.autocast('cuda', dtype=torch.bfloat16):
            times = best_ms({name: partial(model, big, None, None, 'test')
                             for name, model in cl.items()}, device, few)
        for name, ms in times.items():
            rows[name]['throughput_bs64_bf16_cl'] = 64e3 / ms
    steps.update()
    steps.close()
    return rows


def report(preset: str, device: torch.device, rows: dict, mm: float) -> list[str]:
    """The table and the target checks, as printable lines."""
    base = rows['baseline']
    cuda = device.type == 'cuda'
    head = (f"{'config':<22}{'params M':>9}{'GFLOPs':>8}{'bs1 ms':>9}{'bs16 img/s':>11}"
            f"{'peak MB':>9}{'GFLOP/s':>9}{'eff.':>6}" + (f"{'bs64 bf16 img/s':>16}" if cuda else ''))
    lines = [head]
    for name, r in rows.items():
        lines.append(f"{name:<22}{r['params'] / 1e6:>9.2f}{r['gflops']:>8.2f}{r['latency_ms_bs1']:>9.1f}"
                     f"{r['throughput_bs16']:>11.1f}{r['peak_mem_mb']:>9.0f}{r['gflop_per_s_bs1']:>9.1f}"
                     f"{r['matmul_share_bs1']:>6.0%}"
                     + (f"{r['throughput_bs64_bf16_cl']:>16.1f}" if cuda else ''))
    lines.append(f'float32 matmul: {mm:.1f} GFLOP/s on {device}')
    lines.append('targets:')
    for name, limit in TARGET_RATIO.items():
        ratio = rows[name]['latency_ms_bs1'] / base['latency_ms_bs1']
        lines.append(f"  {'met ' if ratio <= limit else 'MISS'} {name} latency {ratio:.2f}x baseline "
                     f'(<= {limit}x)')
    mem_limit = MEM_TARGET_MB.get((preset, device.type))
    for name, r in rows.items():
        if mem_limit is not None:
            lines.append(f"  {'met ' if r['peak_mem_mb'] < mem_limit else 'MISS'} {name} peak memory "
                         f"{r['peak_mem_mb']:.0f} MB (< {mem_limit} MB)")
        bs1 = 1e3 / r['latency_ms_bs1']
        lines.append(f"  {'met ' if r['throughput_bs16'] >= bs1 else 'MISS'} {name} throughput bs16 "
                     f"{r['throughput_bs16']:.1f} >= bs1 {bs1:.1f} img/s")
        if preset == 'paper':
            eff = r['matmul_share_bs1']
            lines.append(f"  {'met ' if eff >= EFFICIENCY_TARGET else 'MISS'} {name} bs1 efficiency "
                         f'{eff:.0%} of matmul (>= {EFFICIENCY_TARGET:.0%})')
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument('--json', type=Path, help='also write the figures to this JSON file')
    parser.add_argument('--repeats', type=int, default=20, help='timed runs at batch 1 (default 20); '
                        'a quarter of that, at least 3, at batch 16 and 64')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.repeats < 1:
        raise UserError(f'--repeats must be at least 1, got {args.repeats}')
    args.preset = args.preset or 'cpu'
    settings = {'preset': args.preset, **args_overrides(args)}
    conf = Config().update(**settings)
    device, _ = select_device(parse_gpu(args.gpu))
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    print(f'preset {args.preset}, {conf.input_img_shape[0]} px, {conf.backbone}, feat_dim {conf.feat_dim}, '
          f'device {device}, {torch.get_num_threads()} threads, load average {load:.2f} on {cpus} '
          'CPUs' + (' (busy: CPU timings are noisy)' if load > 0.25 * cpus else ''))
    n = 4096 if device.type == 'cuda' else 2048
    mm = matmul_gflops(device, n)
    rows = measure(settings, device, args.repeats)
    mm = max(mm, matmul_gflops(device, n))  # before and after: the better of the two
    for name, r in rows.items():
        r['gflop_per_s_bs1'] = r['gflops'] / (r['latency_ms_bs1'] * 1e-3)
        r['matmul_share_bs1'] = r['gflop_per_s_bs1'] / mm
        print(f'\n{name} parameters:\n' + r.pop('summary'))
    print()
    print('\n'.join(report(args.preset, device, rows, mm)))
    if args.json:
        args.json.write_text(json.dumps({'preset': args.preset, 'device': str(device),
                                         'matmul_gflops': mm, 'load_average': load,
                                         'configs': rows}, indent=2))
        print(f'wrote {args.json}')


if __name__ == '__main__':
    run_cli(main)
