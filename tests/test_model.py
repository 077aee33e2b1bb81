"""The whole network (main/model.py): outputs, gradients, ablations, determinism, a small overfit,
input checks, and the DataParallel wrapper (DistributedDataParallel: test_distributed.py)."""
import math

import pytest
import torch

from config import PRESETS, Config
from errors import UserError
from model import Model, get_model, parameter_counts, parameter_summary
from nets.mano_head import root_relative_mesh
from utils.preprocessing import IGNORE_LABEL
from utils.mano import ManoLayer

ALL_OFF = dict(use_seg=False, use_iet=False, use_cgblock=False, use_let=False)
OUT_KEYS = {'joints_coord_cam', 'mesh_coord_cam', 'joints_coord_img', 'mano_pose', 'mano_shape'}
LOSS_KEYS = {'mano_verts', 'mano_joints', 'mano_pose', 'mano_shape', 'joints_img'}

SIZE = PRESETS['cpu']['input_img_shape'][0]   # the crops the cpu preset's network takes


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """These tests run the network for many steps; with two threads on two cores shared with
    other work, OpenMP's spin-waiting can make them ten times slower, with one they stay steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def configure():
    """A new config: the cpu preset plus overrides."""
    return lambda **fields: Config().update(preset='cpu', **fields)


def consistent_samples(mano: ManoLayer, n: int, size: int, seed: int = 0) -> tuple[dict, dict]:
    """n samples whose targets agree with each other: random MANO parameters through the layer give
    the 3D joints; a pinhole camera (wrist 0.5 m ahead) gives the 2D joints; the image shows a
    coloured blob at each projected joint; the segmentation marks pixels near joints as hand. The
    last sample has no segmentation labels."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(n, 48, generator=g) * 0.4
    pose[:, :3] = torch.randn(n, 3, generator=g) * 1.0
    shape = torch.randn(n, 10, generator=g) * 0.5
    with torch.no_grad():
        _, joints = mano(pose, shape)
    rel = joints - joints[:, :1]
    cam = rel + torch.tensor([0.0, 0.0, 0.5])
    focal = 2.0  # in crop widths: 10 cm at 0.5 m covers 0.4 of the crop
    joints_img = focal * cam[..., :2] / cam[..., 2:] + 0.5                     # (n, 21, 2) in 0..1

    pix = (torch.arange(size) + 0.5) / size
    d2 = ((pix[None, None, None, :] - joints_img[..., 0, None, None]) ** 2
          + (pix[None, None, :, None] - joints_img[..., 1, None, None]) ** 2)   # (n, 21, S, S)
    colours = torch.rand(21, 3, generator=g)
    blobs = torch.exp(-d2 / (2 * 0.03 ** 2))
    img = (torch.einsum('njhw,jc->nchw', blobs, colours)).clamp(0, 1)
    seg = (blobs.amax(1)[:, 1::4, 1::4] > 0.3).long()                          # (n, S/4, S/4)
    seg[-1] = IGNORE_LABEL
    targets = {'joints_img': joints_img, 'joints_coord_cam': rel, 'mano_pose': pose,
               'mano_shape': shape, 'seg': seg}
    return {'img': img}, targets


def _train_batch(size: int, n: int = 2, seed: int = 0) -> tuple[dict, dict]:
    return consistent_samples(ManoLayer(), n, size, seed)


# ---------------------------------------------------------------- outputs

@pytest.mark.parametrize('branch', ['image', 'feature'])
def test_train_and_test_outputs(configure, branch):
    conf = configure(hand_branch=branch)
    s = conf.input_img_shape[0]
    model = get_model(conf, 'train')
    inputs, targets = _train_batch(s)
    losses = model(inputs, targets, {}, 'train')
    assert set(losses) == LOSS_KEYS | {'seg'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())

    model.eval()
    with torch.no_grad():
        out = model(inputs, None, None, 'test')
    assert set(out) == OUT_KEYS | {'seg'}
    assert out['joints_coord_cam'].shape == (2, 21, 3) and out['mesh_coord_cam'].shape == (2, 778, 3)
    assert out['joints_coord_img'].shape == (2, 21, 2) and out['mano_pose'].shape == (2, 48)
    assert out['mano_shape'].shape == (2, 10) and out['seg'].shape == (2, 3, s // 4, s // 4)
    assert torch.allclose(out['seg'].sum(1), torch.ones(2, s // 4, s // 4), atol=1e-5)
    assert out['joints_coord_cam'][:, 0].abs().max() == 0          # root-relative
    # pose/shape and mesh describe the same hand
    verts, joints = model.mano_layer(out['mano_pose'], out['mano_shape'])
    assert torch.allclose(verts - joints[:, :1], out['mesh_coord_cam'], atol=1e-5)
    assert model.hand_model_id == ManoLayer().model_id


def test_baseline_runs(configure):
    conf = configure(**ALL_OFF)
    model = get_model(conf, 'train')
    assert model.seg_head is None and model.iet is None and model.cgblock is None
    assert type(model.refiner).__name__ == 'SelfAttention'
    inputs, targets = _train_batch(conf.input_img_shape[0])
    losses = model(inputs, targets, {}, 'train')
    assert set(losses) == LOSS_KEYS
    sum(losses.values()).backward()
    with torch.no_grad():
        assert set(model.eval()(inputs, None, None, 'test')) == OUT_KEYS


@pytest.mark.parametrize('size', [128, 192, 256])
def test_input_sizes(configure, size):
    conf = configure(input_img_shape=(size, size), feat_dim=32, iet_heads=2, let_heads=2)
    model = get_model(conf, 'test')
    with torch.no_grad():
        out = model({'img': torch.rand(1, 3, size, size)}, None, None, 'test')
    assert out['mesh_coord_cam'].shape == (1, 778, 3) and out['seg'].shape[-1] == size // 4


@pytest.mark.parametrize('shape', [(1, 3, 200, 200), (1, 4, SIZE, SIZE), (1, 3, 128, 128), (3, SIZE, SIZE)])
def test_wrong_input_shape_is_refused(configure, shape):
    conf = configure()
    model = get_model(conf, 'test')
    with pytest.raises(ValueError) as err:
        model({'img': torch.rand(*shape)}, None, None, 'test')
    assert f'(B, 3, {SIZE}, {SIZE})' in str(err.value) and str(shape) in str(err.value)


def test_imagenet_weights_are_fetched_for_training_only(configure, tmp_path, monkeypatch):
    """Offline with pretrained=True: 'test' builds (a checkpoint replaces the weights anyway),
    'train' stops with the UserError that says where the weight file goes."""
    conf = configure(pretrained=True)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError('no network')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    assert not get_model(conf, 'test').training
    with pytest.raises(UserError, match='pretrained=False'):
        get_model(conf, 'train')


def test_bad_mode_is_refused(configure):
    conf = configure()
    with pytest.raises(ValueError, match="'train' or 'test'"):
        get_model(conf, 'eval')


# ---------------------------------------------------------------- gradients, determinism

@pytest.mark.parametrize('branch', ['image', 'feature'])
def test_every_parameter_gets_a_gradient(configure, branch):
    conf = configure(hand_branch=branch)
    model = get_model(conf, 'train')
    inputs, targets = _train_batch(conf.input_img_shape[0], n=3)
    g = torch.Generator().manual_seed(4)    # whole frames and hand boxes for the hand localiser
    inputs['frame'] = torch.rand(3, 3, conf.localiser_size, conf.localiser_size, generator=g)
    targets['frame_box'] = torch.tensor([[0.1, 0.2, 0.3, 0.25], [0.5, 0.5, 0.2, 0.3], [0.3, 0.1, 0.4, 0.4]])
    losses = model(inputs, targets, {}, 'train')
    assert 'loc' in losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []


def _grad_norms(model: Model, loss: torch.Tensor) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    return {name: sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
            for name, module in (('backbone', model.backbone), ('seg_head', model.seg_head),
                                 ('hand_head', model.regressor.hand_head),
                                 ('encoder', model.regressor.encoder))}


@pytest.mark.parametrize('branch', ['image', 'feature'])
@pytest.mark.parametrize('scale', [0.0, 0.5, 1.0])
def test_mesh_grad_scale_controls_what_the_mesh_losses_train(configure, scale, branch):
    conf = configure(mesh_grad_scale=scale, hand_branch=branch)
    model = get_model(conf, 'train')
    inputs, targets = _train_batch(SIZE, n=3)
    losses = model(inputs, targets, {}, 'train')
    mesh = _grad_norms(model, losses['mano_verts'] + losses['mano_joints'])
    assert mesh['encoder'] > 0
    assert mesh['seg_head'] == 0            # the hand view's mask never passes the mesh gradient
    assert (mesh['backbone'] > 0) == (scale > 0) and (mesh['hand_head'] > 0) == (scale > 0)
    if scale == 0.5:                        # exactly half of what flows at 1
        conf = configure(mesh_grad_scale=1.0, hand_branch=branch)
        full = get_model(conf, 'train')
        full.load_state_dict(model.state_dict())
        ref = _grad_norms(full, sum(v for k, v in full(inputs, targets, {}, 'train').items()
                                    if k in ('mano_verts', 'mano_joints')))
        assert mesh['hand_head'] == pytest.approx(0.5 * ref['hand_head'], rel=1e-4)
    assert _grad_norms(model, losses['seg'])['seg_head'] > 0


def test_mesh_loss_gt_root_ignores_the_predicted_global_rotation(configure):
    """With mesh_loss_gt_root the vertex loss depends on the predicted finger rotations only: a
    change of the predicted global rotation changes the plain loss but not this one."""
    inputs, targets = _train_batch(SIZE, n=2)
    values = {}
    for gt_root in (False, True):
        conf = configure(mesh_loss_gt_root=gt_root)
        torch.manual_seed(0)
        model = get_model(conf, 'train').eval()   # eval: batch norm does not move between the passes
        head = model.regressor.mano_head
        for turn in (0.0, 1.0):
            def rotate_root(module, args, out, turn=turn):
                out = dict(out)
                spin = ManoLayer().pose_to_rotmat(torch.tensor([[0.0, turn, 0.0] + [0.0] * 45]))[:, 0]
                rotmat = out['rotmat'].clone()
                rotmat[:, 0] = spin @ rotmat[:, 0]
                out['rotmat'] = rotmat
                out['verts'], out['joints'] = root_relative_mesh(model.mano_layer, rotmat, out['shape'])
                return out
            handle = head.register_forward_hook(rotate_root)
            with torch.no_grad():
                values[gt_root, turn] = float(model(inputs, targets, {}, 'train')['mano_verts'])
            handle.remove()
    assert values[False, 0.0] != pytest.approx(values[False, 1.0], rel=1e-3)
    assert values[True, 0.0] == pytest.approx(values[True, 1.0], rel=1e-5)


def test_eval_is_deterministic_and_per_sample(configure):
    conf = configure()
    model = get_model(conf, 'test')
    img = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        a = model({'img': img}, None, None, 'test')
        b = model({'img': img}, None, None, 'test')
        single = model({'img': img[1:2]}, None, None, 'test')
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.allclose(a[key][1:2], single[key], atol=1e-5), key


def test_autocast_keeps_the_mano_layer_in_float32(configure):
    conf = configure()
    model = get_model(conf, 'train')
    inputs, targets = _train_batch(conf.input_img_shape[0])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(inputs, targets, {}, 'train')
        out = model.eval()(inputs, None, None, 'test')
    assert all(torch.isfinite(v) for v in losses.values())
    assert out['mesh_coord_cam'].dtype == torch.float32 and out['mano_pose'].dtype == torch.float32


# ---------------------------------------------------------------- training

def test_overfits_four_samples(configure):
    """A few Adam steps on 4 consistent samples cut the total loss by more than half (how fast:
    bench/train_speed.py)."""
    conf = configure()
    torch.manual_seed(0)
    model = get_model(conf, 'train')
    inputs, targets = _train_batch(conf.input_img_shape[0], n=4, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(20):
        total = sum(model(inputs, targets, {}, 'train').values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert all(math.isfinite(t) for t in totals)
    assert min(totals[-5:]) < 0.5 * totals[0], totals


# DistributedDataParallel: tests/test_distributed.py

def test_data_parallel_wrapper_passes_dicts_through(configure):
    conf = configure()
    dp = torch.nn.DataParallel(get_model(conf, 'train'))
    inputs, targets = _train_batch(conf.input_img_shape[0])
    losses = dp(inputs, targets, {}, 'train')
    assert set(losses) == LOSS_KEYS | {'seg'} and all(v.dim() == 0 for v in losses.values())


# ---------------------------------------------------------------- parameter table

def test_parameter_counts_cover_the_model(configure):
    conf = configure()
    model = get_model(conf, 'test')
    counts = parameter_counts(model)
    assert sum(v for k, v in counts.items() if k != 'total') == counts['total']
    assert counts['total'] == sum(p.numel() for p in model.parameters())
    assert {'backbone', 'seg_head', 'iet', 'cgblock', 'refiner', 'regressor.mano_head'} <= set(counts)
    assert 'regressor.hand_head' in parameter_summary(model)
    conf = configure(**ALL_OFF)
    assert 'seg_head' not in parameter_counts(Model(conf))
