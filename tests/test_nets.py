"""The network's modules one by one: output shapes, and agreement with plain reference computations
written here (attention maps built in full, cross-entropy by hand, pixel centres by index)."""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from errors import UserError
from nets import backbone as backbone_module
from nets.backbone import FPN, imagenet_weight_file
from nets.hand_head import HandEncoder, HandHead, Hourglass, soft_argmax
from nets.iic import CGBlock, IET, IETLayer
from nets.let import LET, LETBlock, SelfAttention, stripe_attention
from nets.loss import segmentation_loss
from nets.mano_head import ManoHead, ground_truth_mesh
from nets.segmentation import SegmentationHead, hand_feature, hand_image
from utils.preprocessing import IGNORE_LABEL
from test_model import one_thread  # noqa: F401  (autouse: these tests also run on one thread)
from utils.mano import ManoLayer
from utils.rotation import axis_angle_to_matrix


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- backbone

@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50'])
def test_fpn_shapes(name):
    fpn = FPN(name, dim=32).eval()
    with torch.no_grad():
        f, p2 = fpn(torch.rand(2, 3, 64, 96))
        f_only, none = fpn(torch.rand(1, 3, 64, 64), with_p2=False)
    assert f.shape == (2, 32, 8, 12) and p2.shape == (2, 32, 16, 24)
    assert f_only.shape == (1, 32, 8, 8) and none is None
    assert not any(n.startswith('fc') for n, _ in fpn.named_parameters())  # no unused classifier


def test_fpn_without_p2_has_no_p2_layer():
    fpn = FPN('resnet18', dim=16, with_p2=False)
    assert fpn.lat2 is None and fpn(torch.rand(1, 3, 64, 64))[1] is None


def test_pretrained_weights_missing_offline_names_the_file(tmp_path, monkeypatch):
    """No network: the error names the exact file torchvision's cache expects, and the way out."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError('<urlopen error [Errno -3] Temporary failure in name resolution>')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(UserError) as err:
        FPN('resnet18', dim=16, pretrained=True)
    expected = tmp_path / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'
    msg = str(err.value)
    assert str(expected) in msg and 'pretrained=False' in msg
    assert 'https://download.pytorch.org/models/resnet18-f37072fd.pth' in msg


def test_pretrained_weights_read_from_the_cache(tmp_path, monkeypatch):
    """A weight file at that place is used, and a broken one is reported by path."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url, path = imagenet_weight_file('resnet18')
    assert path == tmp_path / 'hub' / 'checkpoints' / url.rsplit('/', 1)[-1]
    path.parent.mkdir(parents=True)
    donor = torchvision.models.resnet18()
    torch.save(donor.state_dict(), path)
    loaded = FPN('resnet18', dim=16, pretrained=True)
    assert torch.equal(loaded.layer3[0].conv1.weight, donor.layer3[0].conv1.weight)
    assert torch.equal(loaded.stem[0].weight, donor.conv1.weight)

    path.write_bytes(b'not a checkpoint')
    with pytest.raises(UserError, match='delete it'):
        backbone_module.imagenet_state_dict('resnet18')


# ---------------------------------------------------------------- segmentation

def test_segmentation_head_shape():
    head = SegmentationHead(32)
    assert head(torch.rand(2, 32, 16, 16)).shape == (2, 3, 16, 16)


def test_hand_view_keeps_hand_and_fills_the_rest():
    img = torch.rand(2, 3, 64, 64)
    hand_everywhere = torch.tensor([-20.0, 20.0, -20.0]).view(1, 3, 1, 1).expand(2, 3, 16, 16)
    no_hand = torch.tensor([20.0, -20.0, -20.0]).view(1, 3, 1, 1).expand(2, 3, 16, 16)
    assert torch.allclose(hand_image(img, hand_everywhere), img, atol=1e-6)
    mean = torch.tensor(backbone_module.IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 64, 64)
    assert torch.allclose(hand_image(img, no_hand), mean, atol=1e-6)
    feat = torch.rand(2, 8, 8, 8)
    assert torch.allclose(hand_feature(feat, hand_everywhere), feat, atol=1e-6)
    assert hand_feature(feat, no_hand).abs().max() < 1e-6


def _reference_seg_loss(logits, labels):
    """Cross-entropy by hand over labelled pixels + Dice of the hand class per labelled sample."""
    logp = logits.log_softmax(1)
    ce_terms, dices = [], []
    for b in range(labels.shape[0]):
        valid = labels[b] != IGNORE_LABEL
        if not valid.any():
            continue
        lab = labels[b][valid]
        ce_terms.append(-logp[b].permute(1, 2, 0)[valid].gather(1, lab[:, None]).squeeze(1))
        p = logits[b].softmax(0)[1][valid]
        g = (lab == 1).float()
        dices.append(1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1))
    return torch.cat(ce_terms).mean() + torch.stack(dices).mean()


def test_segmentation_loss_matches_reference_and_ignores_unlabelled_samples():
    logits = torch.randn(3, 3, 8, 8)
    labels = torch.randint(0, 3, (3, 8, 8))
    labels[0, :4] = IGNORE_LABEL           # partly labelled
    labels[2] = IGNORE_LABEL               # not labelled at all
    loss = segmentation_loss(logits, labels)
    assert torch.allclose(loss, _reference_seg_loss(logits, labels), atol=1e-5)
    assert torch.allclose(loss, segmentation_loss(logits[:2], labels[:2]), atol=1e-6)


def test_segmentation_loss_without_labels_is_exactly_zero():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((2, 8, 8), IGNORE_LABEL))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all() and logits.grad.abs().max() == 0


def test_segmentation_loss_small_for_a_confident_correct_guess():
    labels = torch.randint(0, 3, (2, 8, 8))
    logits = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 30
    assert segmentation_loss(logits, labels) < 0.02
    assert segmentation_loss(-logits, labels) > 1.0


def test_segmentation_loss_rejects_wrong_label_size():
    with pytest.raises(ValueError, match=r'\(B, H/4, W/4\)'):
        segmentation_loss(torch.randn(2, 3, 8, 8), torch.zeros(2, 16, 16, dtype=torch.long))


# ---------------------------------------------------------------- IIC

def test_iet_layer_matches_full_attention_maps():
    """IET = softmax map scaled row-wise by sigmoid(mean over keys of a second map), built in full."""
    layer = IETLayer(dim=16, heads=2, mlp_ratio=2.0, size=4).eval()
    for p in layer.parameters():          # non-trivial biases and norms
        torch.nn.init.normal_(p, std=0.3)
    hand, full = torch.randn(2, 16, 16), torch.randn(2, 16, 16)
    out = layer(hand, full)

    hq = layer.pos_q(layer.norm_q(hand))
    fk = layer.pos_k(layer.norm_kv(full))
    q, q2 = layer.to_q(hq).chunk(2, -1)
    k, k2 = layer.to_k(fk).chunk(2, -1)
    v = layer.to_v(layer.norm_kv(full))
    heads = []
    for h in range(2):
        sl = slice(8 * h, 8 * h + 8)
        soft = (q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(8)).softmax(-1)
        gate = torch.sigmoid((q2[..., sl] @ k2[..., sl].transpose(1, 2) / math.sqrt(8)).mean(-1, keepdim=True))
        heads.append((soft * gate) @ v[..., sl])
    x = hand + layer.proj(torch.cat(heads, -1))
    expected = x + layer.mlp(layer.norm_mlp(x))
    assert torch.allclose(out, expected, atol=1e-5)


def test_iet_and_cgblock_shapes():
    iet = IET(dim=32, heads=4, depth=2, mlp_ratio=2.0, size=8)
    hand, full = torch.rand(2, 32, 8, 8), torch.rand(2, 32, 8, 8)
    assert iet(hand, full).shape == (2, 32, 8, 8)
    assert CGBlock(32)(hand, full).shape == (2, 32, 8, 8)
    with pytest.raises(ValueError, match='8x8'):
        iet(torch.rand(1, 32, 4, 4), torch.rand(1, 32, 4, 4))


def test_cgblock_with_weights_set_by_hand():
    """CGBlock with every weight chosen by hand, so that its output can be written out: the 1x1
    reduction adds the two inputs (x = a + hand), batch norms are identities (eval, mean 0,
    variance 1 - eps), PReLU passes the positive values unchanged; the local conv copies x0 and
    doubles x1, the dilated surround conv copies x3 and gives 0: y = (x0, 2 x1, x3, 0). The global
    branch averages y over the map (m), passes it through an identity layer and ReLU, then a
    layer with weights diag(1, -1, 0, 2) and biases (0, 0, ln 3, 0) and a sigmoid:
    gates (s(m0), s(-m1), 3/4, 1/2). The block returns x + y * gates, per channel."""
    dim, eps = 4, 1e-5
    block = CGBlock(dim).eval()
    assert block.glob[2].out_features == 4        # hidden width max(4, dim // 8): square layers
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        block.reduce[0].weight[:, :, 0, 0] = torch.cat([torch.eye(dim), torch.eye(dim)], 1)
        for bn in (block.reduce[1], block.joint[0]):
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - eps)
            bn.eps = eps
        for act in (block.reduce[2], block.joint[1]):
            act.weight.fill_(0.25)
        block.local.weight[0, 0, 1, 1] = 1.0          # centre taps only: no padding effects
        block.local.weight[1, 1, 1, 1] = 2.0
        block.surround.weight[0, 3, 1, 1] = 1.0
        block.glob[2].weight.copy_(torch.eye(dim))
        block.glob[4].weight.copy_(torch.diag(torch.tensor([1.0, -1.0, 0.0, 2.0])))
        block.glob[4].bias.copy_(torch.tensor([0.0, 0.0, math.log(3.0), 0.0]))
    g = torch.Generator().manual_seed(5)
    a, hand = torch.rand(2, dim, 5, 6, generator=g) + 0.1, torch.rand(2, dim, 5, 6, generator=g) + 0.1
    with torch.no_grad():
        out = block(a, hand)
    x = (a + hand).double()
    m0, m1 = x[:, 0].mean((1, 2)), 2 * x[:, 1].mean((1, 2))
    sig = torch.sigmoid
    expected = torch.stack([x[:, 0] * (1 + sig(m0)[:, None, None]),
                            x[:, 1] * (1 + 2 * sig(-m1)[:, None, None]),
                            x[:, 2] + 0.75 * x[:, 3],
                            x[:, 3]], dim=1)
    assert torch.allclose(out.double(), expected, atol=1e-5)


# ---------------------------------------------------------------- LET

def test_stripe_attention_matches_masked_full_attention():
    b, g, h, w, d, s = 2, 3, 8, 6, 4, 2
    q, k, v = (torch.randn(b, g, h, w, d) for _ in range(3))
    out = stripe_attention(q, k, v, s)
    rows = torch.arange(h).repeat_interleave(w)                   # row of each token
    same_band = (rows[:, None] // s) == (rows[None, :] // s)
    logits = q.reshape(b, g, h * w, d) @ k.reshape(b, g, h * w, d).transpose(-1, -2) / math.sqrt(d)
    attn = logits.masked_fill(~same_band, float('-inf')).softmax(-1)
    expected = (attn @ v.reshape(b, g, h * w, d)).reshape(b, g, h, w, d)
    assert torch.allclose(out, expected, atol=1e-5)


def test_let_block_sees_a_cross_plus_a_3x3_neighbourhood():
    """The output at (y, x) changes when an input inside its row band or column band changes, and
    not at all for an input outside the cross (and outside LePE's 3x3 reach)."""
    block = LETBlock(dim=8, heads=2, stripe=2, mlp_ratio=2.0).eval()
    x = torch.randn(1, 8, 8, 8)
    base = block(x)[0, :, 1, 1]                           # row band rows 0-1, column band cols 0-1

    def changed(y, xx):
        x2 = x.clone()
        x2[0, :, y, xx] += torch.randn(8)  # not a constant shift, which LayerNorm would remove
        return not torch.allclose(block(x2)[0, :, 1, 1], base, atol=1e-6)

    assert changed(0, 7) and changed(7, 0)               # same rows / same columns, far away
    assert not changed(5, 6) and not changed(7, 7)       # outside the cross


def test_let_and_baseline_shapes_and_stripe_check():
    x = torch.rand(2, 16, 8, 8)
    assert LET(16, heads=4, depth=2, stripe=4, mlp_ratio=2.0)(x).shape == x.shape
    assert SelfAttention(16, heads=4, depth=1, mlp_ratio=2.0, size=8)(x).shape == x.shape
    with pytest.raises(ValueError, match='stripe width 3'):
        LET(16, heads=4, depth=1, stripe=3, mlp_ratio=2.0)(x)
    with pytest.raises(ValueError, match='even'):
        LETBlock(16, heads=3, stripe=4, mlp_ratio=2.0)


# ---------------------------------------------------------------- hand head

def test_soft_argmax_of_one_hot_maps_gives_pixel_centres():
    h, w = 6, 10
    maps = torch.zeros(1, 3, h, w)
    where = [(0, 0), (5, 9), (2, 7)]
    for j, (y, x) in enumerate(where):
        maps[0, j, y, x] = 1
    expected = torch.tensor([[(x + 0.5) / w, (y + 0.5) / h] for y, x in where])
    assert torch.allclose(soft_argmax(maps)[0], expected)


@pytest.mark.parametrize('size', [8, 12, 16, 24, 32])
def test_hand_head_and_encoder_shapes(size):
    head, enc = HandHead(16, size), HandEncoder(16)
    heatmaps, feat, joints = head(torch.rand(2, 16, size, size))
    assert heatmaps.shape == (2, 21, size, size) and feat.shape == (2, 16, size, size)
    assert torch.allclose(heatmaps.sum((2, 3)), torch.ones(2, 21), atol=1e-5)
    assert joints.shape == (2, 21, 2) and ((joints > 0) & (joints < 1)).all()
    assert enc(heatmaps, feat).shape == (2, 64)


def test_hourglass_handles_odd_sizes():
    assert Hourglass(8, 2)(torch.rand(2, 8, 6, 6)).shape == (2, 8, 6, 6)   # 6 -> 3 -> 1 -> 3 -> 6


# ---------------------------------------------------------------- MANO head

def test_mano_head_starts_at_the_mean_hand_and_agrees_with_the_mano_layer():
    mano = ManoLayer()
    head = ManoHead(32, mano)
    out = head(torch.randn(3, 32))
    assert out['rotmat'].shape == (3, 16, 3, 3) and out['pose'].shape == (3, 48)
    assert out['verts'].shape == (3, 778, 3) and out['joints'].shape == (3, 21, 3)
    assert out['pose'].abs().max() < 0.05 and out['shape'].abs().max() < 0.05   # mean pose, mean shape
    # The axis-angle output and the mesh describe the same hand.
    verts, joints = mano(out['pose'], out['shape'])
    assert torch.allclose(verts - joints[:, :1], out['verts'], atol=1e-5)
    assert torch.allclose(axis_angle_to_matrix(
        (out['pose'] + torch.cat([torch.zeros(3), mano.hands_mean])).view(3, 16, 3)),
        out['rotmat'], atol=1e-5)
    assert out['joints'][:, 0].abs().max() == 0


def test_ground_truth_mesh_stays_float32_under_autocast():
    mano = ManoLayer()
    pose, shape = torch.randn(2, 48) * 0.5, torch.randn(2, 10)
    rotmat, verts = ground_truth_mesh(mano, pose, shape)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        rotmat_ac, verts_ac = ground_truth_mesh(mano, pose, shape)
    assert verts_ac.dtype == torch.float32
    assert torch.equal(verts, verts_ac) and torch.equal(rotmat, rotmat_ac)
    ref_verts, ref_joints = mano(pose, shape)
    assert torch.allclose(verts, ref_verts - ref_joints[:, :1], atol=1e-6)
    assert torch.allclose(rotmat, mano.pose_to_rotmat(pose), atol=1e-6)
