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

from checkpoints import list_snapshots
from config import add_common_args, args_overrides, config_from_args, parse_gpu
from errors import run_cli
from inference import load_model
from runtime import setup_runtime
from training import Trainer


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
    conf = config_from_args(args)
    runtime = setup_runtime(parse_gpu(args.gpu))
    model = None
    if args.resume and (snaps := list_snapshots(conf.model_dir)):
        # resume with the architecture the snapshot was trained with; the command line still wins
        model, conf = load_model(snaps[max(snaps)], runtime.device, preset=args.preset,
                                 **args_overrides(args))
    try:
        Trainer(conf, runtime, model=model, resume=args.resume).train()
    finally:
        if runtime.distributed:
            import torch.distributed as dist
            dist.destroy_process_group()


if __name__ == '__main__':
    run_cli(main)
