"""Training and testing end to end: train.py -> snapshot -> test.py -> metrics; resuming; snapshot
safety; the HO3D submission written by test.py; the stated errors."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import test_data_helpers as fx
from checkpoints import (find_snapshot, list_snapshots, load_checkpoint, load_network, model_config_from,
                         save_checkpoint, snapshot_path)
from config import Config
from errors import UserError
from runtime import Runtime
from training import NonFiniteLoss, Trainer
from utils.curves import plot_training_curves
from utils.mano import JOINT_NAMES, ManoLayer
from utils.metrics import SUMMARY_KEYS, f_score, pck_auc, procrustes_align
from utils.submission import read_submission

ROOT = Path(__file__).resolve().parents[1]
CPU = Runtime(torch.device('cpu'), [])


def _cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / 'main' / script), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope='module')
def trained(synth_set, tmp_path_factory) -> Path:
    """train.py for one epoch on the session's tiny SYNTH set; returns its output_dir."""
    out = tmp_path_factory.mktemp('train_out')
    res = _cli('train.py', '--gpu', 'cpu', '--preset', 'cpu', '--trainset', 'SYNTH', '--end_epoch', '1',
               '--set', f'output_dir={out}', f'synth_root={synth_set}')
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _configure(synth_set: Path, out: Path, **extra) -> Config:
    return Config().update(preset='cpu', trainset='SYNTH', testset='SYNTH', synth_root=str(synth_set),
                           output_dir=str(out), **{'num_thread': 0, **extra})


def test_train_writes_a_complete_snapshot_and_log(trained):
    path = snapshot_path(trained / 'model_dump', 1)
    ckpt = load_checkpoint(path)
    assert {'epoch', 'network', 'optimizer', 'scheduler', 'config', 'hand_model'} <= set(ckpt)
    assert ckpt['epoch'] == 1 and ckpt['config']['trainset'] == 'SYNTH' and ckpt['preset'] == 'cpu'
    assert ckpt['hand_model'].startswith(('builtin:', 'mano:'))
    assert not any(k.startswith('module.') for k in ckpt['network'])
    log = (trained / 'log' / 'train_logs.txt').read_text()
    assert 'epoch 1/1 iter 2/2' in log and 'samples/s' in log and 'ETA' in log


def test_history_matches_the_log_and_is_drawn(trained):
    """The snapshot's history holds the epoch means that the epoch's last log line reports, and
    the learning rate the epoch trained with and its wall time; the curves picture is there."""
    ckpt = load_checkpoint(snapshot_path(trained / 'model_dump', 1))
    (entry,) = ckpt['history']
    last = [line for line in (trained / 'log' / 'train_logs.txt').read_text().splitlines()
            if 'epoch 1/1 iter 2/2' in line][-1]
    logged = dict(re.findall(r'(\w+) (\d+\.\d{4}) ', last.split(' | ')[2] + ' '))
    assert entry['epoch'] == 1 and entry['lr'] == pytest.approx(ckpt['config']['lr'])
    assert set(logged) == set(entry) - {'epoch', 'lr', 'seconds'} and 'total' in logged
    assert 0 < entry['seconds'] < 600
    for key, value in logged.items():
        assert entry[key] == pytest.approx(float(value), abs=5e-5), key
    assert entry['total'] == pytest.approx(sum(v for k, v in entry.items()
                                               if k not in ('epoch', 'lr', 'seconds', 'total')), rel=1e-6)
    picture = cv2.imread(str(trained / 'log' / 'train_curves.png'))
    assert picture is not None and picture.shape == (600, 750, 3)
    board = EventAccumulator(str(trained / 'log'))
    board.Reload()
    scalars = {tag: board.Scalars(tag)[-1].value for tag in board.Tags()['scalars']}
    assert scalars['time/seconds'] == pytest.approx(entry['seconds'])
    assert scalars['lr/lr'] == pytest.approx(entry['lr']) and scalars['epoch_loss/total'] == pytest.approx(entry['total'])


def test_curves_need_history_and_leave_no_temporary_file(tmp_path):
    history = [{'epoch': e, 'lr': 1e-3 * 0.5 ** (e > 2), 'mano_verts': 2.0 / e, 'seg': 1.0 / e,
                'total': 3.0 / e} for e in (1, 2, 3)]
    plot_training_curves(history, tmp_path / 'log' / 'curves.png')
    assert [p.name for p in (tmp_path / 'log').iterdir()] == ['curves.png']
    with pytest.raises(ValueError, match='at least one epoch'):
        plot_training_curves([], tmp_path / 'empty.png')


def _synth_test_truth(synth_set: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SYNTH evaluation frames' root-relative joints (N, 21, 3) and MANO meshes (N, 778, 3),
    metres, and their occlusion (N,), from the annotation file (float64, not via the loader)."""
    anns = json.loads((synth_set / 'annotations' / 'SYNTH_evaluation_data.json').read_text())['annotations']
    joints = np.array([a['joints_coord_cam'] for a in anns])
    layer = ManoLayer(dtype=torch.float64)
    with torch.no_grad():
        v, j = layer(torch.tensor([a['mano_param']['pose'] for a in anns], dtype=torch.float64),
                     torch.tensor([a['mano_param']['shape'] for a in anns], dtype=torch.float64))
    return joints - joints[:, :1], (v - j[:, :1]).numpy(), np.array([a['occlusion'] for a in anns])


def test_test_py_writes_metrics(trained, synth_set):
    """metrics_SYNTH_1.json is what the saved predictions score against the ground truth, worked
    out here from predictions_SYNTH_1.npz and the annotation file: plain errors by hand,
    Procrustes and F-scores with utils.metrics (checked against scipy in test_metrics.py)."""
    res = _cli('test.py', '--gpu', 'cpu', '--testset', 'SYNTH', '--test_epoch', '1',
               '--set', f'output_dir={trained}', f'synth_root={synth_set}')
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((trained / 'result' / 'metrics_SYNTH_1.json').read_text())
    assert set(SUMMARY_KEYS) <= set(metrics)
    assert metrics['num_samples'] == 10 and metrics['epoch'] == 1
    with np.load(trained / 'result' / 'predictions_SYNTH_1.npz') as saved:
        pred = {k: saved[k].astype(np.float64) for k in saved.files}
    gt_joints, gt_verts, occlusion = _synth_test_truth(synth_set)
    assert pred['joints'].shape == (10, 21, 3) and pred['verts'].shape == (10, 778, 3)
    np.testing.assert_allclose(pred['occlusion'], occlusion, atol=1e-6)

    err = np.linalg.norm(pred['joints'] - gt_joints, axis=-1)                     # (N, 21)
    bone = lambda j: np.linalg.norm(j[:, 9] - j[:, 0], axis=-1)[:, None, None]     # wrist - middle1  # noqa: E731
    st = (pred['joints'] - pred['joints'][:, :1]) * bone(gt_joints) / bone(pred['joints']) + gt_joints[:, :1]
    pa_joints = np.linalg.norm(procrustes_align(pred['joints'], gt_joints) - gt_joints, axis=-1)
    pa_verts = np.linalg.norm(procrustes_align(pred['verts'], gt_verts) - gt_verts, axis=-1).mean(-1)
    fs = np.array([f_score(procrustes_align(p, g), g, [0.005, 0.015]).f for p, g in zip(pred['verts'], gt_verts)])
    per_sample = {'mpjpe': err.mean(-1), 'st_mpjpe': np.linalg.norm(st - gt_joints, axis=-1).mean(-1),
                  'pa_mpjpe': pa_joints.mean(-1), 'pa_mpvpe': pa_verts, 'f5': fs[:, 0], 'f15': fs[:, 1]}
    for key, values in per_sample.items():
        np.testing.assert_allclose(pred[f'error_{key}'], values, atol=2e-3 if key[0] == 'f' else 1e-7,
                                   err_msg=key)
        scale = 1 if key[0] == 'f' else 1000.0                                     # metres -> mm
        assert metrics[key] == pytest.approx(values.mean() * scale, abs=2e-3 if key[0] == 'f' else 1e-4), key
    assert metrics['mpjpe'] > 1.0          # a one-epoch network is far from perfect: a real check
    assert metrics['auc'] == pytest.approx(pck_auc(pa_joints), abs=1e-3)
    for name, low, high in (('0-20%', 0, 0.2), ('20-40%', 0.2, 0.4), ('>40%', 0.4, 2)):
        sel = (occlusion >= low) & (occlusion < high)
        bucket = metrics['pa_mpjpe_by_occlusion'][name]
        assert bucket['count'] == sel.sum()
        if sel.any():
            assert bucket['pa_mpjpe'] == pytest.approx(per_sample['pa_mpjpe'][sel].mean() * 1000, abs=1e-4)
    assert 0 <= metrics['seg_iou_hand'] <= 1
    assert 'PA-MPJPE' in res.stdout and 'segmentation IoU (hand)' in res.stdout
    sheet = cv2.imread(str(trained / 'vis' / 'test_SYNTH_1.png'))   # 8 of the 10 samples, 3 rows
    assert sheet is not None and sheet.shape == (3 * 160, 8 * 160, 3)


def test_unwritable_test_picture_is_named(tmp_path):
    """test.py's picture of the test crops: a path it cannot write stops with a UserError naming it."""
    spec = importlib.util.spec_from_file_location('test_cli', ROOT / 'main' / 'test.py')
    test_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_cli)
    examples = {'img': np.zeros((2, 64, 64, 3), np.uint8), 'joints_img': np.full((2, 21, 2), 0.5)}
    test_cli.write_examples(examples, tmp_path / 'sheet.png')
    assert cv2.imread(str(tmp_path / 'sheet.png')) is not None
    path = tmp_path / 'missing' / 'sheet.png'
    with pytest.raises(UserError, match=re.escape(str(path))):
        test_cli.write_examples(examples, path)


def test_missing_snapshot_lists_the_epochs_there(trained, synth_set):
    res = _cli('test.py', '--gpu', 'cpu', '--testset', 'SYNTH', '--test_epoch', '7',
               '--set', f'output_dir={trained}', f'synth_root={synth_set}')
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f'error: snapshot_7.pth.tar not found in {trained / "model_dump"} (epochs with snapshots: 1); '
        'train first (python main/train.py, or make quickstart) or pick one of those epochs']


def test_snapshot_that_does_not_fit_names_the_settings_that_differ(trained):
    from model import get_model
    path = snapshot_path(trained / 'model_dump', 1)
    ckpt = load_checkpoint(path)
    stored = model_config_from(ckpt)
    for change, words in (({'feat_dim': 2 * stored['feat_dim']}, 'weights of other sizes'),
                          ({'use_let': False}, 'missing and')):
        conf = Config().update(preset='cpu', **{**stored, **change})
        with pytest.raises(UserError) as err:
            load_network(get_model(conf, 'test'), ckpt, path)
        (key, value), = change.items()
        assert str(path) in str(err.value) and words in str(err.value)
        assert f'trained with {key}={stored[key]} and this run asks for {key}={value}' in str(err.value)
    load_network(get_model(Config().update(preset='cpu', **stored), 'test'), ckpt, path)   # the stored settings fit


@pytest.mark.parametrize('make, words', [
    (lambda p: p.write_bytes(snapshot_path(p.parent.parent / 'model_dump', 1).read_bytes()[:5000]),
     'is damaged or incomplete'),
    (lambda p: p.write_text('epoch 1'), 'cannot read checkpoint .*; it is not an InteractHand snapshot'),
    (lambda p: p.mkdir(), 'is a folder'),
    (lambda p: None, 'does not exist; pass the path of a snapshot_N.pth.tar file'),
])
def test_unreadable_snapshots_are_named(trained, make, words):
    path = trained / 'bad' / 'snapshot_1.pth.tar'
    shutil.rmtree(path.parent, ignore_errors=True)
    path.parent.mkdir()
    make(path)
    with pytest.raises(UserError, match=words) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_resumed_run_matches_uninterrupted_run(synth_set, tmp_path):
    """Two epochs in one go equal one epoch, a new process-like Trainer with --continue, and one
    more: same weights, same Adam state (both moments and the step count), same learning rate
    after the decay at epoch 1; the data loaded by two DataLoader workers (that an epoch is the
    same without workers: test_training_options.py)."""
    settings = dict(end_epoch=2, lr_dec_epoch='1', lr_dec_factor=0.5, train_batch_size=8, num_thread=2,
                    input_img_shape='64,64', feat_dim=32)     # a small network: exactness, not accuracy
    straight = Trainer(_configure(synth_set, tmp_path / 'straight', **settings), CPU)
    straight.train()

    conf = _configure(synth_set, tmp_path / 'resumed', **{**settings, 'end_epoch': 1})
    Trainer(conf, CPU).train()
    conf.update(end_epoch=2)
    resumed = Trainer(conf, CPU, resume=True)
    assert resumed.start_epoch == 1 and resumed.optimizer.param_groups[0]['lr'] == pytest.approx(conf.lr * 0.5)
    resumed.train()

    a, b = load_checkpoint(snapshot_path(tmp_path / 'straight' / 'model_dump', 2)), \
        load_checkpoint(snapshot_path(tmp_path / 'resumed' / 'model_dump', 2))
    for key, value in a['network'].items():
        assert torch.allclose(value.float(), b['network'][key].float(), atol=1e-6), key
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k]['exp_avg'], sb[k]['exp_avg'], atol=1e-6)
        assert torch.allclose(sa[k]['exp_avg_sq'], sb[k]['exp_avg_sq'], rtol=1e-4, atol=1e-12)
        assert torch.equal(sa[k]['step'], sb[k]['step']) and int(sa[k]['step']) == 2 * 5   # 40 frames / 8
    assert any(float(s['exp_avg_sq'].abs().max()) > 0 for s in sa.values())
    assert a['scheduler'] == b['scheduler']
    assert [h['epoch'] for h in b['history']] == [1, 2] and a['history'][0].keys() == b['history'][0].keys()
    for ha, hb in zip(a['history'], b['history']):
        assert all(ha[k] == pytest.approx(hb[k], rel=1e-5) for k in ha if k != 'seconds')
    assert all(h['seconds'] > 0 for h in b['history'])      # the first sitting's epoch keeps its time
    assert b['history'][1]['lr'] == pytest.approx(conf.lr * 0.5)
    # and the uninterrupted run really did change the weights in epoch 2
    first = load_checkpoint(snapshot_path(tmp_path / 'resumed' / 'model_dump', 1))
    assert any(not torch.equal(first['network'][k], v) for k, v in a['network'].items())


def test_snapshots_kept_every_ckpt_freq_and_the_latest(synth_set, tmp_path):
    conf = _configure(synth_set, tmp_path, end_epoch=3, ckpt_freq=2, train_batch_size=16)
    trainer = Trainer(conf, CPU)
    trainer.train()
    assert sorted(list_snapshots(conf.model_dir)) == [2, 3]
    assert find_snapshot(conf.model_dir, None) == snapshot_path(conf.model_dir, 3)
    assert not list(Path(conf.model_dir).glob('.*tmp*'))


def test_interrupted_save_leaves_the_old_snapshot_intact(tmp_path, monkeypatch):
    path = tmp_path / 'snapshot_1.pth.tar'
    save_checkpoint({'epoch': 1, 'network': {'w': torch.ones(3)}}, path)

    def dies_halfway(obj, f, *a, **k):
        Path(f).write_bytes(b'partial')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'epoch': 2, 'network': {'w': torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)['network']['w'], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ['snapshot_1.pth.tar']


def test_interrupt_names_the_snapshot_to_continue_from(synth_set, tmp_path, monkeypatch):
    """Ctrl-C in epoch 1: no snapshot, and the log file says so; in epoch 2 of a new run: epoch 1's
    snapshot stays, and the log file names it and how to go on."""
    conf = _configure(synth_set, tmp_path, end_epoch=3, train_batch_size=16)
    trainer = Trainer(conf, CPU)
    real_epoch = trainer.train_epoch
    log_file = conf.log_dir / 'train_logs.txt'
    for stop_at in (0, 1):
        def ctrl_c(epoch, t_start):
            if epoch == stop_at:
                raise KeyboardInterrupt
            return real_epoch(epoch, t_start)

        monkeypatch.setattr(trainer, 'train_epoch', ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            trainer.train()
        note = log_file.read_text().strip().splitlines()[-1]
        if stop_at == 0:
            assert not list_snapshots(conf.model_dir) and 'no snapshot yet' in note
    assert sorted(list_snapshots(conf.model_dir)) == [1]
    assert 'interrupted' in note and str(snapshot_path(conf.model_dir, 1)) in note
    assert '--continue' in note


def test_non_finite_loss_names_iteration_and_terms(synth_set, tmp_path, monkeypatch):
    conf = _configure(synth_set, tmp_path, end_epoch=2, train_batch_size=16)
    trainer = Trainer(conf, CPU)
    trainer.train_epoch(0, 0.0)
    trainer.save(1)
    model = trainer.model
    real_forward = model.forward

    def nan_on_second_call(inputs, targets, meta, mode, calls=[]):
        calls.append(1)
        losses = real_forward(inputs, targets, meta, mode)
        if len(calls) == 2:
            losses['mano_pose'] = losses['mano_pose'] * float('nan')
        return losses

    monkeypatch.setattr(model, 'forward', nan_on_second_call)
    with pytest.raises(NonFiniteLoss) as err:
        trainer.train_epoch(1, 0.0)
    msg = str(err.value)
    assert 'epoch 2, iteration 2' in msg and 'mano_pose=nan' in msg and 'mano_verts=' in msg
    assert str(snapshot_path(conf.model_dir, 1)) in msg
    assert sorted(list_snapshots(conf.model_dir)) == [1]


def test_ho3d_submission_is_root_aligned(trained, tmp_path):
    """test.py on HO3D-format evaluation data writes pred{N}.json and .zip whose joints, read back
    into our order and axes, have the wrist at the annotation's root_joint_cam."""
    rng = np.random.default_rng(0)
    renderer = fx.MeshRenderer(fx.W, fx.H)
    frames = [fx.make_frame(rng, renderer) for _ in range(3)]
    root = tmp_path / 'HO3D'
    fx.write_ho3d(root, frames[:1], frames)
    res = _cli('test.py', '--gpu', 'cpu', '--testset', 'HO3D', '--test_epoch', '1',
               '--set', f'output_dir={trained}', f'ho3d_root={root}')
    assert res.returncode == 0, res.stderr[-3000:]
    expected = np.array([f.joints[0] for f in frames])
    raw = json.loads((trained / 'result' / 'pred1.json').read_text())
    # the file itself: HO3D order (wrist first), OpenGL axes (y and z negated)
    assert np.abs(np.array(raw[0])[:, 0] - expected * [1, -1, -1]).max() < 1e-5
    for name in ('pred1.json', 'pred1.zip'):
        joints, verts = read_submission(trained / 'result' / name)
        assert joints.shape == (3, 21, 3) and verts.shape == (3, 778, 3)
        assert np.abs(joints[:, 0] - expected).max() < 1e-5
        # the vertices are shifted by the same root and are the same hand: each fingertip joint is
        # a vertex of its own sample's mesh (to the file's 1 um rounding)
        tips = joints[:, [JOINT_NAMES.index(f'{f}4') for f in ('thumb', 'index', 'middle', 'ring', 'pinky')]]
        gap = np.linalg.norm(tips[:, :, None] - verts[:, None], axis=-1).min(-1)       # (3, 5)
        assert gap.max() < 2e-6, gap
    assert not (trained / 'result' / 'metrics_HO3D_1.json').exists()  # no ground truth there
    sheet = cv2.imread(str(trained / 'vis' / 'test_HO3D_1.png'))    # 3 samples; no ground-truth row
    assert sheet is not None and sheet.shape == (2 * 160, 3 * 160, 3)


@pytest.mark.parametrize('args, words', [
    (['--gpu', 'x'], "bad --gpu value 'x'"),
    (['--set', 'lr=fast'], "bad value 'fast' for 'lr'"),
    (['--trainset', 'COCO'], "bad value 'COCO' for 'trainset'"),
])
def test_bad_arguments_give_one_line(args, words, tmp_path):
    res = _cli('train.py', '--set', f'output_dir={tmp_path}', *args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and words in res.stderr


def test_missing_training_data_is_named(tmp_path):
    # the paper preset wants ImageNet weights, which cannot be fetched here: the data is checked first
    res = _cli('train.py', '--gpu', 'cpu', '--preset', 'paper', '--trainset', 'SYNTH',
               '--set', f'output_dir={tmp_path}', f'synth_root={tmp_path / "nothing"}')
    assert res.returncode == 2 and str(tmp_path / 'nothing') in res.stderr
    assert 'generate.py' in res.stderr and 'Traceback' not in res.stderr and 'weights' not in res.stderr


def test_a_new_training_does_not_mix_with_snapshots_already_there(trained, synth_set):
    before = {p: p.stat().st_mtime_ns for p in (trained / 'model_dump').iterdir()}
    with pytest.raises(UserError, match=r'already holds snapshots .*\(epochs 1\); add --continue') as err:
        Trainer(_configure(synth_set, trained), CPU)
    assert str(trained / 'model_dump') in str(err.value)
    assert {p: p.stat().st_mtime_ns for p in (trained / 'model_dump').iterdir()} == before


def test_torchrun_distributed_training_on_cpu(synth_set, tmp_path):
    """Two processes with DistributedDataParallel (gloo): one snapshot, written by rank 0. (torchrun
    --standalone picks a free port itself.)"""
    res = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                          str(ROOT / 'main' / 'train.py'), '--gpu', 'cpu',
                          '--preset', 'cpu', '--trainset', 'SYNTH', '--end_epoch', '1', '--set',
                          f'output_dir={tmp_path}', f'synth_root={synth_set}', 'train_batch_size=8',
                          'num_thread=0'], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(list_snapshots(tmp_path / 'model_dump')) == [1]
    log = (tmp_path / 'log' / 'train_logs.txt').read_text()
    assert '2 processes (DDP)' in log and 'epoch 1/1 iter 2/2' in log  # 20 frames per process / 8


def test_any_torchrun_launch_is_distributed_even_with_one_process(monkeypatch, tmp_path):
    """torchrun sets RANK and WORLD_SIZE; one process is still DDP (the same code path as many),
    a plain launch is not."""
    import torch.distributed as dist

    from runtime import setup_runtime
    assert not setup_runtime([]).distributed
    for key, value in {'RANK': '0', 'WORLD_SIZE': '1', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1',
                       'MASTER_PORT': '0'}.items():     # port 0: the store takes any free port
        monkeypatch.setenv(key, value)
    try:
        rt = setup_runtime([])
        assert rt.distributed and rt.world_size == 1 and rt.rank == 0 and rt.main_process
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_snapshots_with_one_optimizer_group_load_but_do_not_continue(trained, synth_set, tmp_path):
    """A snapshot written before the hand localiser had its own learning rate (one Adam group for
    all parameters) cannot go on training in two groups: --continue says so and names the file."""
    ckpt = load_checkpoint(snapshot_path(trained / 'model_dump', 1))
    groups = ckpt['optimizer']['param_groups']
    assert len(groups) == 2 and groups[1]['lr'] == pytest.approx(groups[0]['lr'] * Config().localiser_lr_factor)
    ckpt['optimizer']['param_groups'] = [{**groups[0], 'params': groups[0]['params'] + groups[1]['params']}]
    conf = _configure(synth_set, tmp_path)
    old = snapshot_path(conf.model_dir, 1)
    old.parent.mkdir(parents=True)
    save_checkpoint(ckpt, old)
    with pytest.raises(UserError, match=r'older version .* 1 parameter group\(s\) instead of 2') as err:
        Trainer(conf, CPU, resume=True)
    assert str(old) in str(err.value) and 'start a new training' in str(err.value)
