"""User-facing errors and the wrapper that turns them into one clear line on the command line."""
import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix (missing file, bad value). The message is one sentence saying what
    is wrong and what to do; command-line tools print it without a traceback."""


def run_cli(main: Callable[[], object]) -> None:
    """Run an entry point's ``main()``: a :class:`UserError` prints ``error: <message>`` and exits
    with status 2; Ctrl-C exits with status 130 after one line."""
    try:
        main()
    except UserError as err:
        print(f'error: {_one_line(err)}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


def _one_line(err: UserError) -> str:
    """The user's sentence, also when a DataLoader worker raised it (PyTorch then re-raises it
    with the worker's traceback folded into the message, the original message on the last line)."""
    text = str(err)
    if 'Original Traceback' in text:
        text = text.strip().splitlines()[-1].split(': ', 1)[-1]
    return text
