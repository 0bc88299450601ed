"""Helpers for the command lines in tools/."""
import sys


def cli_call(call, *args, **kwargs) -> int:
    """A tool's exit status for ``call(*args, **kwargs)``: 0, or 1 after writing ``error: <message>``
    to stderr for the FileNotFoundError or ValueError that names a bad input file or field."""
    try:
        call(*args, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0
