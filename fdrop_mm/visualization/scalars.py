"""mmengine's scalar logs of a work dir, read as one log across resumed runs."""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Union


@dataclass
class ScalarRecords:
    """One run's scalar records: ``train`` (with ``iter``) by iteration, ``val`` by ``step``."""
    files: List[Path]
    train: List[dict]
    val: List[dict]


def scalar_log_files(run: Path) -> List[Path]:
    """The logs of ``run``: a work dir's ``<timestamp>/vis_data/scalars.json`` (or the
    ``<timestamp>.json`` beside it where that is missing) in timestamp order, or ``run`` itself
    if it is a file."""
    if run.is_file():
        return [run]
    if not run.is_dir():
        raise FileNotFoundError(f'log {run} does not exist')
    files = []
    for vis_data in sorted(p for p in run.glob('*/vis_data') if p.is_dir()):
        for log in (vis_data / 'scalars.json', vis_data / f'{vis_data.parent.name}.json'):
            if log.is_file():
                files.append(log)
                break
    if not files:
        raise FileNotFoundError(f'{run} has no */vis_data/scalars.json (is it an mmengine work dir?)')
    return files


def read_scalars(run: Union[str, Path]) -> ScalarRecords:
    """The records of a work dir (all its timestamps, see :func:`scalar_log_files`) or of one
    scalars file. A later log's record for the same iteration or validation step replaces the
    earlier one, so a resumed run reads as one run. Blank lines are skipped; a line that is not a
    JSON record is a ValueError naming the file and line."""
    files = scalar_log_files(Path(run))
    train, val = {}, {}
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{number}: not a JSON record ({e.msg})') from None
            if not isinstance(record, dict) or not ('iter' in record or 'step' in record):
                raise ValueError(f'{path}:{number}: not a training ("iter") or validation ("step") '
                                 'record')
            if 'iter' in record:
                train[record['iter']] = record
            else:
                val[record['step']] = record
    return ScalarRecords(files=files, train=[train[i] for i in sorted(train)],
                         val=[val[s] for s in sorted(val)])
