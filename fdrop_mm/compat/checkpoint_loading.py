"""Let torch's default weights-only ``torch.load`` read mmengine checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch 2.6
that means weights-only loading, which refuses the non-tensor objects every
mmengine checkpoint holds (the MessageHub's ``HistoryBuffer``s and numpy
arrays and scalars), so resume, ``load_from`` and ``init_cfg=Pretrained`` fail.
Instead of switching weights-only loading off, which would let a checkpoint
run code, this allow-lists exactly those globals. A training checkpoint pickles
HistoryBuffer's statistics methods as ``getattr(HistoryBuffer, 'mean')``; the
builtin ``getattr`` would reach anything, so ``builtins.getattr`` is bound to a
stand-in that resolves only those methods.

A checkpoint that cannot be read (truncated, not a checkpoint) raises an error
naming the file, on every path mmengine loads local files through (resume,
``load_from``, ``init_cfg=Pretrained``); torch's own message names none.
"""
import contextlib
import pickle
from typing import Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, load_from_local

HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                  np.uint32, np.uint64, np.float16, np.float32, np.float64, np.complex64,
                  np.complex128)


def history_buffer_statistic(owner, name):
    """``builtins.getattr`` while unpickling: only ``HistoryBuffer.<statistic>``."""
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer statistics '
        f'methods {HISTORY_BUFFER_STATISTICS} are allowed')


def allow_mmengine_checkpoints() -> None:
    """Register the globals of mmengine checkpoints as torch safe globals."""
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (history_buffer_statistic, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        *(type(np.dtype(t)) for t in NUMERIC_DTYPES),
    ])


@contextlib.contextmanager
def naming_the_file(path, kind: Optional[type] = None):
    """Re-raise an error reading checkpoint ``path`` (a missing file excepted) with a message
    naming it, as ``kind`` (default: the error's own type, or RuntimeError where that type takes
    other arguments); an error already naming the file keeps its message."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as error:  # a damaged file makes torch/pickle/zipfile raise many types
        prefix = f'cannot read checkpoint {path}: '
        message = str(error) if str(error).startswith(prefix) else f'{prefix}{type(error).__name__}: {error}'
        try:
            renamed = (kind or type(error))(message)
        except Exception:
            renamed = RuntimeError(message)
        raise renamed from error


def load_from_local_file(filename, map_location):
    """mmengine's local-file loader, with the file named when it cannot be read."""
    with naming_the_file(filename):
        return load_from_local(filename, map_location)


def name_unreadable_checkpoints() -> None:
    """Make mmengine's loader of local checkpoint files name a file it cannot read."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_from_local_file)
