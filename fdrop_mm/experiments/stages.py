"""Stages that a rerun skips: ``<work_dir>/done.json`` records what a finished stage produced
and what it was made from, so an interrupted experiment (days of training at the paper's
scale) continues where it stopped, and a stage whose inputs changed is run again."""
import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence
from unittest import mock

from mmengine.config import Config, DictAction

from .launcher import REPO

DONE = 'done.json'


def run_stage(work_dir: Path, produce: Callable[[Path], dict], inputs: Optional[dict] = None,
              tag: str = 'pipeline') -> dict:
    """Run ``produce(work_dir)`` unless ``work_dir/done.json`` exists, its ``files`` are present
    and it was made from the same ``inputs`` (a JSON-able description of what the stage reads);
    a complete stage whose inputs changed (another config, regenerated data, a new backbone) is
    rerun, not reused. Returns the record: what ``produce`` returned, plus ``inputs``."""
    done = work_dir / DONE
    if done.is_file():
        record = json.loads(done.read_text())
        if all(Path(path).is_file() for path in record.get('files', [])):
            if record.get('inputs') == inputs:
                print(f'[{tag}] skip {work_dir} (complete)', flush=True)
                return record
            print(f'[{tag}] rerun {work_dir}: its inputs changed since {DONE}', flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    record = dict(produce(work_dir), inputs=inputs)
    done.write_text(json.dumps(record, indent=2))
    return record


def parse_cfg_options(options: Sequence[str]) -> dict:
    """``key=value`` strings read as tools/train.py's ``--cfg-options`` reads them."""
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options] if options else []).cfg_options


def config_sha256(config, options: Sequence[str] = (), env: Optional[dict] = None) -> str:
    """sha256 of the config a run trains: ``config`` (relative to the repository) with all it
    inherits, read under the environment variables ``env`` as the run reads them, with
    ``options`` applied, as mmengine's ``pretty_text``."""
    with mock.patch.dict(os.environ, env or {}):
        cfg = Config.fromfile(REPO / config)
    cfg.merge_from_dict(parse_cfg_options(options))
    return hashlib.sha256(cfg.pretty_text.encode()).hexdigest()
