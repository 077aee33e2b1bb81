"""Logging to the console (through tqdm, so progress bars stay intact) and to a file."""
import logging
import sys
from pathlib import Path

from tqdm import tqdm

LOGGER_NAME = 'interacthand'
_FORMAT = '%(asctime)s %(levelname)s %(message)s'


class _TqdmHandler(logging.Handler):
    """Writes records with tqdm.write, which keeps an active progress bar below the text."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(log_file: Path | None = None, quiet: bool = False) -> logging.Logger:
    """Configure the 'interacthand' logger once per process: INFO to the console (WARNING only
    when ``quiet``) and, when ``log_file`` is given, every record to that file (appended)."""
    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    console = _TqdmHandler()
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter('%(message)s'))
    log.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(logging.Formatter(_FORMAT, '%Y-%m-%d %H:%M:%S'))
        log.addHandler(fh)
    return log
