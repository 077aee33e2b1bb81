"""The training options for speed (channels-last memory format, fused Adam, torch.compile,
persistent DataLoader workers, worker counts) give the same training as without them: the same
batches and augmentation whatever the workers, the same losses and updates to float tolerance."""
import copy

import pytest
import torch

from checkpoints import load_checkpoint, snapshot_path
from config import Config
from loaders import TrainingSampler, build_loader, worker_count
from model import Model
from runtime import Runtime
from training import Trainer, make_optimizer, prepare_model

CPU = Runtime(torch.device('cpu'), [])
SMALL = dict(preset='cpu', pretrained=False, feat_dim=32, iet_heads=2, let_heads=2,
             input_img_shape='64,64', let_stripe=2)


def _batch(b: int = 4, size: int = 64) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    return ({'img': torch.rand(b, 3, size, size, generator=g)},
            {'joints_img': torch.rand(b, 21, 2, generator=g),
             'joints_coord_cam': torch.randn(b, 21, 3, generator=g) * 0.03,
             'mano_pose': torch.randn(b, 48, generator=g) * 0.3, 'mano_shape': torch.randn(b, 10, generator=g),
             'seg': torch.randint(0, 3, (b, size // 4, size // 4), generator=g)})


def _losses_and_grads(conf: Config, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """The loss terms and the gradients of one training step on a fixed batch (fixed weights)."""
    torch.manual_seed(0)
    model = prepare_model(Model(conf).to(dtype), conf).train()
    inputs, targets = _batch()
    inputs = {'img': inputs['img'].to(dtype)}
    targets = {k: v.to(dtype) if v.is_floating_point() else v for k, v in targets.items()}
    losses = model(inputs, targets, {}, 'train')
    sum(losses.values()).backward()
    return ({k: v.item() for k, v in losses.items()},
            {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})


def test_channels_last_gives_the_same_losses_and_gradients():
    """float32: the same losses (the convolutions sum in another order); float64, where rounding
    cannot hide a difference: the same gradients too. (float32 gradients are no test: batch norm
    over a few values in the 2D-heatmap encoder turns rounding noise into 10 % differences.)"""
    base, _ = _losses_and_grads(Config().update(**SMALL, channels_last=False))
    losses, _ = _losses_and_grads(Config().update(**SMALL, channels_last=True))
    assert losses.keys() == base.keys()
    for k, v in base.items():
        assert losses[k] == pytest.approx(v, rel=1e-5), k
    _, base_grads = _losses_and_grads(Config().update(**SMALL, channels_last=False), torch.float64)
    _, grads = _losses_and_grads(Config().update(**SMALL, channels_last=True), torch.float64)
    largest = max(g.abs().max().item() for g in base_grads.values())
    assert grads.keys() == base_grads.keys() and largest > 0
    for k, g in base_grads.items():   # biases before batch norm have a true gradient of 0: noise only
        assert (grads[k] - g).abs().max().item() <= 1e-7 * g.abs().max().item() + 1e-12 * largest, k


def test_fused_adam_steps_like_the_plain_one():
    """The same gradients, three steps: fused and foreach Adam give the same weights and moments."""
    conf = Config().update(**SMALL)
    torch.manual_seed(0)
    a = Model(conf)
    b = copy.deepcopy(a)
    opt_a = make_optimizer(a, conf, torch.device('cpu'), fused=False)
    opt_b = make_optimizer(b, conf, torch.device('cpu'), fused=True)
    assert opt_b.param_groups[0]['fused'] and not opt_a.param_groups[0]['fused']
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        for pa, pb in zip(a.parameters(), b.parameters()):
            pa.grad = torch.randn(pa.shape, generator=g)
            pb.grad = pa.grad.clone()
        opt_a.step()
        opt_b.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, atol=1e-6, rtol=1e-5, msg=name)
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        torch.testing.assert_close(sb['exp_avg_sq'], sa['exp_avg_sq'], atol=1e-7, rtol=1e-5, msg=name)
    assert not torch.equal(next(a.parameters()), next(Model(conf).parameters()))


@pytest.mark.parametrize('localiser_size', [0, 64])
def test_the_localiser_learns_at_its_own_rate(localiser_size):
    """Every parameter is in exactly one group; the localiser's group (when there is a localiser)
    holds its parameters at lr * localiser_lr_factor, and the rest learn at lr."""
    conf = Config().update(**SMALL, localiser_size=localiser_size, lr=2e-3, localiser_lr_factor=2.5)
    model = Model(conf)
    groups = make_optimizer(model, conf, torch.device('cpu')).param_groups
    ids = [id(p) for g in groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert groups[0]['lr'] == 2e-3
    if localiser_size:
        assert len(groups) == 2 and groups[1]['lr'] == pytest.approx(5e-3)
        assert {id(p) for p in groups[1]['params']} == {id(p) for p in model.localiser.parameters()}
    else:
        assert len(groups) == 1


def test_channels_last_puts_the_convolutions_in_that_format():
    conf = Config().update(**SMALL, channels_last=True)
    model = prepare_model(Model(conf), conf)
    conv = model.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_compile_option_compiles_the_forward_in_place_and_keeps_the_weight_names():
    """``compile=true`` compiles the network's forward on first use (torch.compile in place), so
    snapshots keep the same weight names; its numerical agreement is checked on a GPU by
    bench/gpu_check.sh (building the compiled graph takes minutes on 2 CPU cores)."""
    conf = Config().update(**SMALL, compile=True)
    model = Model(conf)
    names = list(model.state_dict())
    prepared = prepare_model(model, conf)
    assert prepared is model and model._compiled_call_impl is not None
    assert list(model.state_dict()) == names
    plain = prepare_model(Model(Config().update(**SMALL)), Config().update(**SMALL))
    assert plain._compiled_call_impl is None


def test_training_keys_do_not_depend_on_workers_or_processes(synth_set):
    """The sampler's keys for an epoch depend on (seed, epoch) only; under DDP the ranks split
    one epoch's indices into disjoint shards with the same augmentation seed."""
    conf = Config().update(preset='cpu', trainset='SYNTH', synth_root=str(synth_set), seed=5)
    from loaders import build_split
    dataset = build_split(conf, 'train')
    one = TrainingSampler(dataset, CPU, conf.seed)
    one.set_epoch(3)
    keys = list(one)
    assert sorted(i for i, _ in keys) == list(range(len(dataset))) and len({s for _, s in keys}) == 1
    again = TrainingSampler(dataset, CPU, conf.seed)
    again.set_epoch(3)
    assert list(again) == keys
    again.set_epoch(4)
    assert list(again) != keys
    shards = []
    for rank in range(2):
        s = TrainingSampler(dataset, Runtime(torch.device('cpu'), [], rank, 2, True), conf.seed)
        s.set_epoch(3)
        shards.append(list(s))
    assert not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}
    assert {i for sh in shards for i, _ in sh} == set(range(len(dataset)))
    assert {s for sh in shards for _, s in sh} == {keys[0][1]}


def test_an_epoch_is_the_same_with_and_without_persistent_workers(synth_set, tmp_path):
    """Two epochs with no workers and with two persistent workers: the same snapshots (the data,
    its augmentation and the order come from (seed, epoch, index) alone)."""
    out = {}
    for workers in (0, 2):
        conf = Config().update(preset='cpu', trainset='SYNTH', testset='SYNTH', synth_root=str(synth_set),
                               output_dir=str(tmp_path / f'w{workers}'), num_thread=workers, end_epoch=2,
                               train_batch_size=8, channels_last=False)
        trainer = Trainer(conf, CPU)
        if workers:
            assert trainer.loader.persistent_workers and trainer.loader.num_workers == 2
        trainer.train()
        out[workers] = load_checkpoint(snapshot_path(conf.model_dir, 2))
    for k, v in out[0]['network'].items():
        torch.testing.assert_close(out[2]['network'][k], v, atol=1e-6, rtol=0, msg=k)
    assert [h['total'] for h in out[0]['history']] == pytest.approx([h['total'] for h in out[2]['history']], rel=1e-6)


def test_worker_count_follows_the_cores(monkeypatch):
    monkeypatch.setattr('os.sched_getaffinity', lambda pid: set(range(16)))
    auto = Config().update(num_thread=-1)
    assert worker_count(auto, CPU) == 15
    ddp = Runtime(torch.device('cpu'), [], 0, 4, True)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    assert worker_count(auto, ddp) == 3                  # 16 cores shared by 4 processes, one each for them
    monkeypatch.setattr('os.sched_getaffinity', lambda pid: {0})
    assert worker_count(auto, CPU) == 1
    assert worker_count(Config().update(num_thread=0), CPU) == 0
    with pytest.raises(Exception, match="'num_thread'"):
        Config().update(num_thread=-2)


def test_test_loader_keeps_order_and_starts_fresh_workers(synth_set):
    conf = Config().update(preset='cpu', testset='SYNTH', synth_root=str(synth_set), num_thread=1)
    from loaders import build_split
    loader = build_loader(conf, build_split(conf, 'test'), CPU)
    assert loader.sampler is not None and not loader.persistent_workers and not loader.drop_last
    assert list(loader.sampler) == list(range(len(loader.dataset)))
