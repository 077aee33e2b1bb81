"""Writing output files: atomically (an interrupted or failed write never leaves a broken file),
to paths checked before long work, with numbers rounded for JSON."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import numpy.typing as npt

from errors import UserError


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same folder and suffix, readable
    like an ordinary file), then rename it over ``path``: readers see the old file or the complete
    new one, never part of it. If ``write`` raises (or the run is interrupted), the temporary file
    is removed and the exception goes on. Creates the folder if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f'.{path.name}.tmp', suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)   # mkstemp makes it private; outputs and caches are shared like the data
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def output_file(path: Path, option: str) -> Path:
    """``path`` with its folder created, checked before long work so that its results are not lost
    at the end; a path that cannot be written is a UserError naming ``option`` (e.g. ``--json``)."""
    path = Path(path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f'{option} {path}: {blocker} is a file, not a folder; pick another path')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f'{option} {path}: cannot create its folder ({err.strerror}); '
                        'pick another path') from None
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise UserError(f'{option} {path}: cannot write there; pick a writable file path')
    return path


def rounded(x: npt.ArrayLike, digits: int) -> list:
    """Array-like -> nested lists of Python floats rounded to ``digits`` decimals, for JSON files."""
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, comments: list[str]) -> None:
    """Wavefront OBJ: comment lines, verts (V, 3), faces (F, 3) 0-based (written 1-based)."""
    lines = [f'# {c}' for c in comments]
    lines += [f'v {x:.6f} {y:.6f} {z:.6f}' for x, y, z in verts]
    lines += [f'f {a + 1} {b + 1} {c + 1}' for a, b, c in faces]
    path.write_text('\n'.join(lines) + '\n')
