"""Draw the README's architecture figure, asset/architecture.png (boxes and arrows, matplotlib).

    python docs/architecture.py [--out asset/architecture.png]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# (x, y) centre, label, colour; the canvas is 17 x 5.4 units
BOXES = {
    'img': ((1.0, 2.7), 'RGB crop\n(B,3,S,S)', '#e8e8e8'),
    'fpn': ((3.4, 2.7), 'FPN backbone\n(ResNet)', '#cfe2f3'),
    'seg': ((5.9, 4.45), 'interaction-aware\nsegmentation\nbg / hand / object', '#d9ead3'),
    'view': ((8.5, 4.45), 'hand view\nimg ⊙ P(hand) or\nF_o ⊙ P(hand)', '#d9ead3'),
    'fo': ((5.9, 0.95), 'full view F_o\n(B,C,S/8,S/8)', '#cfe2f3'),
    'fh': ((11.0, 4.45), 'hand view F_h\n(B,C,S/8,S/8)', '#cfe2f3'),
    'iet': ((11.0, 2.7), 'IET\ncross-attention:\nF_h asks F_o', '#fce5cd'),
    'cg': ((13.5, 2.7), 'CGBlock\ncontext-guided\nfusion', '#fce5cd'),
    'let': ((16.0, 2.7), 'LET\nlocally enhanced\ntransformer', '#fff2cc'),
    'reg': ((16.0, 0.95), 'regressor: 2D joints,\n16 rotations, 10 betas', '#ead1dc'),
    'mano': ((13.5, 0.95), 'MANO layer: mesh\n(778) + joints (21)', '#ead1dc'),
}
ARROWS = [('img', 'fpn'), ('fpn', 'seg'), ('fpn', 'fo'), ('seg', 'view'), ('view', 'fh'),
          ('fh', 'iet'), ('fo', 'iet'), ('iet', 'cg'), ('fh', 'cg'), ('cg', 'let'), ('let', 'reg'),
          ('reg', 'mano')]
W, H = 1.95, 1.1   # box size


def edge_point(centre: tuple, towards: tuple, pad: float = 0.12) -> tuple:
    """Where the line from a box's centre towards a point leaves the box (plus a small gap)."""
    (x, y), (tx, ty) = centre, towards
    dx, dy = tx - x, ty - y
    t = min((W / 2 + pad) / abs(dx) if dx else float('inf'), (H / 2 + pad) / abs(dy) if dy else float('inf'))
    return x + t * dx, y + t * dy


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(17, 5.4), dpi=75)
    ax.set_xlim(-0.1, 17.1), ax.set_ylim(0.2, 5.2), ax.axis('off')
    for (x, y), text, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x - W / 2, y - H / 2), W, H, boxstyle='round,pad=0.05',
                                    fc=colour, ec='#444444', lw=1.2))
        ax.text(x, y, text, ha='center', va='center', fontsize=10.5)
    for a, b in ARROWS:
        ca, cb = BOXES[a][0], BOXES[b][0]
        ax.add_patch(FancyArrowPatch(edge_point(ca, cb), edge_point(cb, ca), arrowstyle='-|>',
                                     mutation_scale=14, shrinkA=0, shrinkB=0, color='#333333', lw=1.2))
    ax.text(12.25, 1.9, 'IIC = IET + CGBlock: interaction information capture', ha='center', fontsize=10,
            style='italic')
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=Path, default=ROOT / 'asset' / 'architecture.png')
    draw(parser.parse_args().out)
