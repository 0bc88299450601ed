"""A stage's JSON records (``done.json``, ``submitted.json``), written so that a kill cannot
leave half a file and read so that a damaged one is reported, not raised.

A record is written to a temporary file in its folder, flushed to disk and renamed over the old
one (``os.replace`` is atomic on POSIX), so a reader sees the old record or the new one, never
a truncated mix. A record that cannot be read or parsed (a disk that filled, a hand edit) makes
its stage "not complete", with a reason naming the file.
"""
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(descriptor, 'w') as out:
            json.dump(record, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> Tuple[Optional[dict], str]:
    """``path``'s record and ``'read'``; None and why not if it is missing, unreadable, not JSON
    or not a JSON object (the reason names ``path``)."""
    path = Path(path)
    if not path.is_file():
        return None, f'no {path}'
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f'{path} is unreadable or corrupt ({type(error).__name__}: {error})'
    if not isinstance(record, dict):
        return None, f'{path} is corrupt: expected a JSON object, found {type(record).__name__}'
    return record, 'read'
