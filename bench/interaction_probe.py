"""What the two views and IIC do inside a trained network: measurements behind the SYNTH benchmark.

    python bench/interaction_probe.py --checkpoint PATH --synth DIR [--train 1500] [--eval 600]
                                      [--json PATH]

Three measurements on a snapshot and a SYNTH set (the training split to fit probes, the
evaluation split to score them):

1. **Linear probes**: does a view carry the fingers? A ridge regression from each feature map
   (``Model.views``: full view F_o, hand view F_h, after IIC, after LET), averaged over positions,
   to the ten leading finger-PCA coefficients of the true pose; held-out R^2 (1: all the
   articulation, 0: no better than the mean). If F_h holds no more than F_o, the second view
   adds nothing for IIC to use.
2. **IET attention**: where hand-view positions on the hand look in the full view. For query
   cells whose true label is hand, the share of attention on hand, object and background cells,
   against those classes' share of all cells (what uniform attention would give); and the gate.
3. **Gradients**: how much of each loss term reaches each part (the gradient norm of the part's
   parameters, per term, on one training batch, with the loss settings of the training).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'main'))
import bootstrap  # noqa: E402,F401  (puts common/, main/, data/ on the path)

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from checkpoints import load_checkpoint  # noqa: E402
from errors import UserError, run_cli  # noqa: E402
from inference import load_model  # noqa: E402
from nets.layers import to_tokens  # noqa: E402
from SYNTH.SYNTH import SYNTH  # noqa: E402
from utils.files import output_file  # noqa: E402
from utils.preprocessing import BACKGROUND, HAND, IGNORE_LABEL, OBJECT  # noqa: E402

VIEWS = ('full', 'hand', 'iic', 'refined')
NUM_COEFFS = 10
RIDGE = 1.0


def pca_coefficients(pose: torch.Tensor, components: torch.Tensor) -> np.ndarray:
    """pose (B, 48), fingers relative to hands_mean -> (B, NUM_COEFFS) leading finger-PCA coefficients."""
    return (pose[:, 3:].double() @ components.double().T)[:, :NUM_COEFFS].numpy()


@torch.no_grad()
def pooled_views(model, dataset, batch: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every view averaged over positions (N, C) per view, and the targets' PCA coefficients (N, K)."""
    feats: dict[str, list] = {v: [] for v in VIEWS}
    coeffs = []
    components = model.mano_layer.hands_components
    for inputs, targets, _ in tqdm(DataLoader(dataset, batch_size=batch), desc='views', leave=False):
        views = model.views(inputs['img'])
        for v in VIEWS:
            feats[v].append(views[v].mean((2, 3)).double().numpy())
        coeffs.append(pca_coefficients(targets['mano_pose'], components))
    return {v: np.concatenate(f) for v, f in feats.items()}, np.concatenate(coeffs)


def ridge_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Held-out R^2 of each target column of a ridge regression (standardised inputs, RIDGE)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    y_mu = y_train.mean(0)
    w = np.linalg.solve(a.T @ a + RIDGE * len(a) * np.eye(a.shape[1]), a.T @ (y_train - y_mu))
    pred = b @ w + y_mu
    return 1 - ((pred - y_test) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)


@torch.no_grad()
def iet_attention(model, dataset, batch: int = 32) -> dict:
    """Attention shares of hand-labelled queries in the first IET layer, against the cell shares."""
    layer = model.iet.layers[0]
    mass = np.zeros(3)
    cells = np.zeros(3)
    gates = []
    for inputs, targets, _ in tqdm(DataLoader(dataset, batch_size=batch), desc='attention', leave=False):
        views = model.views(inputs['img'])
        attn, gate = layer.attention(to_tokens(views['hand']), to_tokens(views['full']))
        attn = attn.mean(1)                                                       # (B, N, N), over heads
        size = views['full'].shape[-1]
        labels = F.interpolate(targets['seg'][:, None].float(), size=(size, size), mode='nearest')[:, 0].long()
        labels = labels.flatten(1)                                                 # (B, N)
        for b in range(len(labels)):
            known = labels[b] != IGNORE_LABEL
            queries = labels[b] == HAND
            if not queries.any() or not known.all():
                continue
            share = attn[b][queries].mean(0)                                       # (N,)
            for i, cls in enumerate((HAND, OBJECT, BACKGROUND)):
                mass[i] += float(share[labels[b] == cls].sum())
                cells[i] += float((labels[b] == cls).float().mean())
            gates.append(float(gate[b].mean(0)[queries].mean()))
    n = max(len(gates), 1)
    names = ('hand', 'object', 'background')
    return {'frames': len(gates), 'attention_share': dict(zip(names, (mass / n).round(4).tolist())),
            'cell_share': dict(zip(names, (cells / n).round(4).tolist())),
            'gate_mean': float(np.mean(gates)) if gates else None}


def gradient_flow(model, dataset, batch: int = 16) -> dict[str, dict[str, float]]:
    """Gradient norm reaching each part of the network from each loss term, one training batch."""
    inputs, targets, meta = next(iter(DataLoader(dataset, batch_size=batch)))
    model.train()
    losses = model(inputs, targets, meta, 'train')
    parts = {name: module for name, module in model.named_children()
             if any(p.requires_grad for p in module.parameters())}
    out = {}
    for term, loss in losses.items():
        model.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        out[term] = {name: float(sum(float((p.grad ** 2).sum()) for p in m.parameters() if p.grad is not None) ** 0.5)
                     for name, m in parts.items()}
    model.eval()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', type=Path, required=True)
    parser.add_argument('--synth', type=Path, required=True, help='the SYNTH set the snapshot was trained on')
    parser.add_argument('--train', type=int, default=1500, help='training frames to fit the probes (default 1500)')
    parser.add_argument('--eval', type=int, default=600, help='evaluation frames to score them (default 600)')
    parser.add_argument('--json', type=Path, metavar='PATH', help='also write the figures to this JSON file')
    args = parser.parse_args()
    if args.json:
        output_file(args.json, '--json')
    if args.train < 50 or args.eval < 20:
        raise UserError('--train must be at least 50 and --eval at least 20 frames')
    model, conf = load_model(args.checkpoint)
    torch.manual_seed(0)
    np.random.seed(0)                   # the training items' augmentation (finger poses do not change)
    size = conf.input_img_shape[0]
    to_tensor = transforms.ToTensor()
    fit = SYNTH(to_tensor, 'train', args.synth, size, conf.mano_path)
    score = SYNTH(to_tensor, 'test', args.synth, size, conf.mano_path)
    fit, score = Subset(fit, range(min(args.train, len(fit)))), Subset(score, range(min(args.eval, len(score))))
    x_fit, y_fit = pooled_views(model, fit)
    x_score, y_score = pooled_views(model, score)
    probes = {}
    for v in VIEWS:
        r2 = ridge_r2(x_fit[v], y_fit, x_score[v], y_score)
        probes[v] = {'r2_mean': float(r2.mean()), 'r2_first': float(r2[0]), 'r2': r2.round(4).tolist()}
    result = {'checkpoint': str(args.checkpoint), 'fit_frames': len(fit), 'eval_frames': len(score),
              'probes': probes}
    if model.iet is not None and model.seg_head is not None:
        result['iet_attention'] = iet_attention(model, score)
    # the loss settings it was trained with (load_model restores only the architecture)
    trained = {k: v for k, v in load_checkpoint(args.checkpoint)['config'].items()
               if k.startswith(('lambda_', 'mesh_'))}
    result['gradients'] = gradient_flow(load_model(args.checkpoint, **trained)[0], Subset(fit.dataset, range(16)))
    print(f'linear probes, held-out R^2 of the {NUM_COEFFS} leading finger-PCA coefficients '
          f'({len(fit)} fit, {len(score)} scored):')
    for v, p in probes.items():
        print(f'  {v:<8} mean {p["r2_mean"]:+.3f}   first (grasp) {p["r2_first"]:+.3f}')
    if 'iet_attention' in result:
        a = result['iet_attention']
        print(f'IET attention of hand positions ({a["frames"]} frames): '
              + ', '.join(f'{k} {a["attention_share"][k]:.2f} (cells {a["cell_share"][k]:.2f})' for k in a['cell_share'])
              + f'; mean gate {a["gate_mean"]:.2f}')
    print('gradient norm reaching each part, per loss term:')
    for term, parts in result['gradients'].items():
        print(f'  {term:<12} ' + '  '.join(f'{k} {v:.3g}' for k, v in parts.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    run_cli(main)
