"""Distributed training on the CPU (gloo): each rank trains on its own shard of the training set,
and DistributedDataParallel's averaged gradients equal single-process training on the union of
the ranks' batches. World size 1 runs in this process, world size 2 under torchrun (which picks
a free port itself: --standalone). Also the fp16 GradScaler path, where CUDA exists."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from config import Config
from loaders import build_loader, build_split
from model import get_model
from runtime import Runtime, setup_runtime, unwrap
from test_model import one_thread  # noqa: F401  (autouse: one thread)

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4


def _conf(synth_set: Path, **extra) -> Config:
    return Config().update(preset='cpu', trainset='SYNTH', testset='SYNTH', synth_root=str(synth_set),
                           train_batch_size=BATCH, num_thread=0, **extra)


def _epoch_items(conf: Config, runtime: Runtime) -> tuple[list[int], tuple]:
    """The dataset indices this process trains on in epoch 0, and its first batch."""
    loader = build_loader(conf, build_split(conf, 'train'), runtime)
    loader.sampler.set_epoch(0)
    seen, first = [], None
    for batch in loader:
        seen += batch[2]['idx'].tolist()
        first = first or batch
    return seen, first


def _gradients(model: torch.nn.Module, batch: tuple) -> dict[str, torch.Tensor]:
    """Gradients of the summed losses of one batch; batch norm in eval mode, so that every sample's
    loss is its own and shards add up to the whole batch."""
    model.eval().zero_grad(set_to_none=True)
    losses = model(*batch, 'train')
    sum(losses.values()).backward()
    return {n: p.grad.detach().clone() for n, p in unwrap(model).named_parameters() if p.grad is not None}


def _assert_same_gradients(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and len(want) > 50
    for name, g in want.items():
        scale = float(g.abs().max()) + 1e-12
        assert float((got[name] - g).abs().max()) <= 1e-4 * scale, name


def _cat(batches: list[tuple]) -> tuple:
    return tuple({k: torch.cat([b[i][k] for b in batches]) for k in batches[0][i]} for i in range(3))


# torch's CPU convolution hands 1x1 kernels gradients whose size-1 dimensions have other strides
# than the weight (same memory layout); DDP warns about it even for a plain torchvision ResNet.
@pytest.mark.filterwarnings('ignore:Grad strides do not match bucket view strides')
def test_world_size_one_trains_on_everything_with_plain_gradients(synth_set, monkeypatch):
    """One torchrun-style process (RANK, WORLD_SIZE set; MASTER_PORT 0: any free port): its shard
    is the whole training set, and DDP's gradients equal the bare model's, for two steps (a
    parameter DDP never saw used would fail the second)."""
    for key, value in {'RANK': '0', 'WORLD_SIZE': '1', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1',
                       'MASTER_PORT': '0'}.items():
        monkeypatch.setenv(key, value)
    conf = _conf(synth_set)
    try:
        rt = setup_runtime([])
        assert rt.distributed and rt.world_size == 1
        seen, batch = _epoch_items(conf, rt)
        assert sorted(seen) == list(range(len(build_split(conf, 'train'))))
        torch.manual_seed(0)
        bare = get_model(conf, 'train')
        torch.manual_seed(0)
        ddp = torch.nn.parallel.DistributedDataParallel(get_model(conf, 'train'))
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (bare, ddp)]
        for _ in range(2):
            _assert_same_gradients(_gradients(ddp, batch), _gradients(bare, batch))
            for opt in opts:
                opt.step()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


WORKER = '''
import sys
sys.path[:0] = {paths!r}
import bootstrap  # noqa: F401
import torch
import test_distributed as td
from runtime import setup_runtime

rt = setup_runtime([])
assert rt.distributed and rt.world_size == 2
conf = td._conf({synth!r})
seen, batch = td._epoch_items(conf, rt)
torch.manual_seed(0)
model = td.get_model(conf, 'train')
ddp = torch.nn.parallel.DistributedDataParallel(model)
grads = td._gradients(ddp, batch)
torch.save({{'rank': rt.rank, 'seen': seen, 'batch': batch, 'grads': grads}}, {out!r} + f'/rank{{rt.rank}}.pt')
'''


@pytest.mark.filterwarnings('ignore:Grad strides do not match bucket view strides')
def test_two_ranks_get_disjoint_shards_and_average_to_the_whole_batch(synth_set, tmp_path):
    paths = [str(ROOT / d) for d in ('common', 'main', 'data', 'tests')]
    script = tmp_path / 'worker.py'
    script.write_text(textwrap.dedent(WORKER.format(paths=paths, synth=str(synth_set), out=str(tmp_path))))
    res = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                          str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    n = len(build_split(_conf(synth_set), 'train'))
    a, b = (set(r['seen']) for r in ranks)
    assert len(ranks[0]['seen']) == len(a) == len(b) == n // 2      # each rank: half, no repeats
    assert not a & b and a | b == set(range(n))                       # disjoint, and all of it
    batches = [r['batch'] for r in ranks]
    assert all(int((bt[1]['seg'] == 255).sum()) == 0 for bt in batches)   # equal pixel counts per shard
    torch.manual_seed(0)
    reference = _gradients(get_model(_conf(synth_set), 'train'), _cat(batches))
    for r in ranks:
        _assert_same_gradients(r['grads'], reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='the fp16 GradScaler path needs CUDA, which '
                    'this machine lacks (on the CPU amp=fp16 falls back to float32: tested below)')
def test_fp16_training_steps_through_the_grad_scaler(synth_set, tmp_path):
    from training import Trainer
    conf = _conf(synth_set, amp='fp16', end_epoch=1, output_dir=str(tmp_path))
    trainer = Trainer(conf, Runtime(torch.device('cuda:0'), [0]))
    before = {k: v.detach().clone() for k, v in unwrap(trainer.model).state_dict().items()}
    assert trainer.scaler.is_enabled()
    means = trainer.train_epoch(0, 0.0)
    assert all(torch.isfinite(torch.tensor(v)) for v in means.values())
    assert 0 < trainer.scaler.get_scale() < float('inf')
    after = unwrap(trainer.model).state_dict()
    assert any(not torch.equal(before[k], after[k].detach()) for k in before if after[k].is_floating_point())


def test_fp16_without_cuda_trains_in_float32_and_says_so(synth_set, tmp_path):
    from training import Trainer
    conf = _conf(synth_set, amp='fp16', output_dir=str(tmp_path))
    trainer = Trainer(conf, Runtime(torch.device('cpu'), []))
    assert not trainer.scaler.is_enabled() and conf.amp == 'none'
    assert 'amp=fp16 needs CUDA; training in float32' in (conf.log_dir / 'train_logs.txt').read_text()
