"""An experiment as a graph of stages that a rerun skips: ``<work_dir>/done.json`` records what
a finished stage produced and what it was made from, so an interrupted experiment (days of
training at the paper's scale) continues where it stopped, and a stage whose inputs changed is
run again. A :class:`StageGraph` (the pipeline, a sweep) lists its :class:`Stage` s in run
order; each can run alone (``StageGraph.run_stage``: one Slurm job) once the stages it
``needs`` are complete."""
import argparse
import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from unittest import mock

from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

from .launcher import REPO
from .progress import JobProgress

DONE = 'done.json'


def completed(work_dir: Path, inputs: Optional[dict] = None) -> Tuple[Optional[dict], str]:
    """``work_dir``'s record if the stage is complete (``done.json`` there, its ``files``
    present, made from ``inputs``), else None and why not."""
    done = work_dir / DONE
    if not done.is_file():
        return None, f'no {done}'
    record = json.loads(done.read_text())
    missing = [path for path in record.get('files', []) if not Path(path).is_file()]
    if missing:
        return None, f'{done} names {missing[0]}, which does not exist'
    if record.get('inputs') != inputs:
        return None, f'its inputs changed since {done} was written'
    return record, 'complete'


def run_stage(work_dir: Path, produce: Callable[[Path], dict], inputs: Optional[dict] = None,
              tag: str = 'pipeline') -> dict:
    """Run ``produce(work_dir)`` unless ``work_dir/done.json`` exists, its ``files`` are present
    and it was made from the same ``inputs`` (a JSON-able description of what the stage reads);
    a complete stage whose inputs changed (another config, regenerated data, a new backbone) is
    rerun, not reused. Returns the record: what ``produce`` returned, plus ``inputs`` and
    ``wall_s`` (seconds ``produce`` took)."""
    record, reason = completed(work_dir, inputs)
    if record is not None:
        print(f'[{tag}] skip {work_dir} (complete)', flush=True)
        return record
    if (work_dir / DONE).is_file():
        print(f'[{tag}] rerun {work_dir}: {reason}', flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    record = dict(produce(work_dir), inputs=inputs)
    record['wall_s'] = round(time.monotonic() - start, 1)
    (work_dir / DONE).write_text(json.dumps(record, indent=2))
    return record


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of an experiment: ``name`` (e.g. ``seed0/pretrain_fd``, also its work folder
    under the experiment's), what it does, its ``arm`` (a sweep: its cell) and ``seed`` (None for
    the final stage), the names of the stages whose records it ``needs``, and its ``work_dir``
    (``done.json`` there once complete). A ``final`` stage (the results table, seconds) records
    nothing and runs every time."""
    name: str
    description: str
    work_dir: Path
    needs: Tuple[str, ...] = ()
    arm: Optional[str] = None
    seed: Optional[int] = None
    final: bool = False


class StageGraph:
    """An experiment's stages, run in order (``run_all``) or one by one (``run_stage``, what a
    Slurm job calls). Subclasses give ``stages``, each stage's ``inputs`` and ``produce``, what
    to ``prepare`` before any stage, and the ``tool`` with the ``arguments`` that make this
    experiment (a stage's job runs ``tool *arguments --stage NAME``)."""
    tag = 'experiment'
    tool: Path

    def arguments(self) -> List[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """What every stage reads and the driver makes first (e.g. tiny data)."""

    def run(self) -> Optional[str]:
        """``prepare``, then every stage (``run_all``); the table."""
        raise NotImplementedError

    def stages(self) -> List[Stage]:
        """Every stage in run order; the final one last."""
        raise NotImplementedError

    def inputs(self, stage: Stage) -> Optional[dict]:
        """What ``stage`` is made from (see :func:`run_stage`); a change reruns it."""
        return None

    def produce(self, stage: Stage, upstream: Dict[str, dict], work_dir: Path) -> dict:
        """Run ``stage`` into ``work_dir`` from its needed stages' records; its record."""
        raise NotImplementedError

    def stage(self, name: str) -> Stage:
        for stage in self.stages():
            if stage.name == name:
                return stage
        raise ValueError(f'--stage {name!r}: no such stage; the stages are '
                         f'{", ".join(stage.name for stage in self.stages())}')

    def record(self, stage: Stage) -> Tuple[Optional[dict], str]:
        """``stage``'s record if it is complete (its inputs as they are now), else None and why."""
        if stage.final:
            return None, 'the final stage runs every time'
        return completed(stage.work_dir, self.inputs(stage))

    def run_stage(self, name: str) -> dict:
        """Run the stage ``name`` (skipped if complete) from the records of the stages it needs,
        which must be complete: an error names the first that is not, never a silent rerun."""
        stage = self.stage(name)
        upstream = {}
        for need in stage.needs:
            record, reason = self.record(self.stage(need))
            if record is None:
                raise RuntimeError(f'stage {name} needs stage {need}, which is not complete '
                                   f'({reason}): run {need} first')
            upstream[need] = record
        if stage.final:
            return self.produce(stage, upstream, stage.work_dir)
        return run_stage(stage.work_dir, lambda work_dir: self.produce(stage, upstream, work_dir),
                         self.inputs(stage), tag=self.tag)

    def run_all(self) -> dict:
        """Every stage in order, complete ones skipped, their progress shown live and their wall
        times tabled at the end (:class:`JobProgress`); the final stage's record."""
        return JobProgress(self).run()


def parse_cfg_options(options: Sequence[str]) -> dict:
    """``key=value`` strings read as tools/train.py's ``--cfg-options`` reads them."""
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options] if options else []).cfg_options


def config_sha256(config, options: Sequence[str] = (), env: Optional[dict] = None) -> str:
    """sha256 of the config a run trains: ``config`` (relative to the repository) with all it
    inherits, read under the environment variables ``env`` as the run reads them, with
    ``options`` applied, as mmengine's ``pretty_text``."""
    cfg = read_config(config, env)
    cfg.merge_from_dict(parse_cfg_options(options))
    return hashlib.sha256(cfg.pretty_text.encode()).hexdigest()


def read_config(config, env: Optional[Mapping[str, str]] = None) -> Config:
    """``config`` (relative to the repository) as a run under the environment variables ``env``
    reads it. mmengine logs every variable it substitutes ("Using env variable ..."); the driver
    reads configs only to hash or check them, several times per stage, so those lines are kept
    out of its output: the stage's own log has them from the run that uses them."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with mock.patch.dict(os.environ, dict(env or {})):
            return Config.fromfile(REPO / config)
    finally:
        logger.setLevel(level)
