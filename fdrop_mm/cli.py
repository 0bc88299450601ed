"""What every command line in tools/ shares: the terminal kept to our output
(:func:`quiet_known_warnings`, called first) and a bad input ending the tool with its message
and exit status 2, as argparse ends it for a bad option (:func:`exit_on_bad_input`)."""
import os
import sys
import warnings

# mmengine's is_installed reloads pkg_resources on every call, which re-emits setuptools'
# deprecation warning: one copy per config read or runner built, none of them ours to fix
KNOWN_UPSTREAM_WARNING = 'pkg_resources is deprecated'


def quiet_known_warnings() -> None:
    """Hide the known upstream ``pkg_resources is deprecated`` UserWarning, nothing else."""
    warnings.filterwarnings('ignore', message=KNOWN_UPSTREAM_WARNING, category=UserWarning)


def exit_on_bad_input(call, *args, **kwargs):
    """``call(*args, **kwargs)``'s result; the FileNotFoundError or ValueError that names a bad
    input file or field ends the tool: ``<tool>: error: <message>`` on stderr, exit status 2."""
    try:
        return call(*args, **kwargs)
    except (FileNotFoundError, ValueError) as error:
        print(f'{os.path.basename(sys.argv[0])}: error: {error}', file=sys.stderr)
        raise SystemExit(2) from None
