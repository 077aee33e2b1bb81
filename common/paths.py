"""Where the project's own files are: the repository root, the default MANO folder and the
built-in hand model's asset (no imports beyond the standard library, so any module may use it)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANO_DIR = ROOT / 'common' / 'utils' / 'manopth' / 'mano' / 'models'   # where reference users keep MANO
BUILTIN_HAND_FILE = ROOT / 'asset' / 'builtin_hand.npz'
