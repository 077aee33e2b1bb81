"""Writing files so that an interrupted or failed write never leaves a broken one behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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
