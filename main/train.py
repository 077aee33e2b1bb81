"""Train InteractHand.

    cd main && python train.py --gpu 0-3                      # HO3D, four GPUs (DataParallel)
    torchrun --nproc_per_node 4 main/train.py --gpu 0-3       # the same with DistributedDataParallel
    python main/train.py --gpu cpu --preset cpu --trainset SYNTH   # small model on the CPU
    python main/train.py --continue                           # resume from the newest snapshot

Snapshots go to output/model_dump/snapshot_{epochs completed}.pth.tar, the log (train_logs.txt)
and the loss curves (train_curves.png) to output/log/.
"""
import bootstrap  # noqa: F401  (puts common/, main/, data/ on the path)

import argparse
from typing import Sequence

from base import Trainer, find_snapshot, list_snapshots, load_checkpoint, model_config_from, setup_runtime
from config import add_common_args, apply_args, cfg, parse_gpu
from errors import run_cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, datasets=('trainset',))
    parser.add_argument('--continue', dest='resume', action='store_true',
                        help='resume from the newest snapshot (weights, optimizer and schedule)')
    parser.add_argument('--end_epoch', type=int, help='train until this many epochs are done')
    parser.add_argument('--seed', type=int, help='random seed (default from config: 0)')
    args = parser.parse_args(argv)
    args.set += [f'{k}={v}' for k in ('end_epoch', 'seed') if (v := getattr(args, k)) is not None]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    apply_args(args)
    if args.resume and list_snapshots(cfg.model_dir):
        # resume with the architecture the snapshot was trained with; the command line still wins
        cfg.update(**model_config_from(load_checkpoint(find_snapshot(cfg.model_dir, None))))
        apply_args(args)
    runtime = setup_runtime(parse_gpu(args.gpu))
    try:
        Trainer(cfg, runtime, resume=args.resume).train()
    finally:
        if runtime.distributed:
            import torch.distributed as dist
            dist.destroy_process_group()


if __name__ == '__main__':
    run_cli(main)
