"""An experiment as a graph of stages that a rerun skips: ``<work_dir>/done.json`` records what
a finished stage produced and what it was made from, so an interrupted experiment (days of
training at the paper's scale) continues where it stopped, and a stage whose inputs changed is
run again. A :class:`StageGraph` (the pipeline, a sweep) lists its :class:`Stage` s in run
order; each can run alone (``StageGraph.run_stage``: one Slurm job) once the stages it
``needs`` are complete.

Inside a stage nothing already done is lost either (docs/checkpoints.md): ``started.json``
records the inputs an attempt at the stage started from and each of its steps that finished
(:func:`step`: training, testing, the backbone's extraction). A later attempt with the same
inputs skips the finished steps and resumes training from the newest checkpoint
(:func:`train`, mmengine's resume); an attempt with other inputs first moves the earlier one's
files into ``stale-<UTC time>/`` (nothing is deleted) and starts afresh.
"""
import argparse
import dataclasses
import fnmatch
import functools
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger

from fdrop_mm.tiny_data import MANIFEST

from .launcher import CONFIGS, REPO, Launcher
from .records import read_record, write_record

DONE = 'done.json'
STARTED = 'started.json'
STALE = 'stale-'
# Left in place when an attempt is moved aside: earlier stale folders, and what a stage's Slurm
# job (fdrop_mm.experiments.slurm) keeps in the stage's folder about the job itself, whose
# output is being written there while the stage runs.
KEPT_IN_PLACE = (f'{STALE}*', 'submitted.json', 'sbatch.sh', 'slurm-*.out')
CHECKPOINT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')  # mmengine's CheckpointHook's names


def completed(work_dir: Path, inputs: Optional[dict] = None) -> Tuple[Optional[dict], str]:
    """``work_dir``'s record if the stage is complete (``done.json`` there and readable, its
    ``files`` present, made from ``inputs``), else None and why not (a missing, truncated or
    corrupt ``done.json`` is named, never raised)."""
    done = work_dir / DONE
    record, reason = read_record(done)
    if record is None:
        return None, reason
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
    rerun, not reused. ``produce`` continues an interrupted attempt made from the same inputs
    (its :func:`step` s and :func:`train`); one made from others is moved aside first
    (:func:`begin_attempt`). Returns the record (written atomically): what ``produce`` returned,
    plus ``inputs`` and ``wall_s`` (seconds ``produce`` took)."""
    record, reason = completed(work_dir, inputs)
    if record is not None:
        print(f'[{tag}] skip {work_dir} (complete)', flush=True)
        return record
    if (work_dir / DONE).exists():
        print(f'[{tag}] rerun {work_dir}: {reason}', flush=True)
    begin_attempt(work_dir, inputs, tag)
    start = time.monotonic()
    record = dict(produce(work_dir), inputs=inputs)
    record['wall_s'] = round(time.monotonic() - start, 1)
    write_record(work_dir / DONE, record)
    return record


def begin_attempt(work_dir: Path, inputs: Optional[dict], tag: str) -> None:
    """Before a stage is produced in ``work_dir``: an earlier attempt made from the same
    ``inputs`` (its ``started.json`` says so) is continued; the files of one made from other
    inputs, or from inputs nobody recorded, are moved into ``stale-<UTC time>/``, saying why;
    then ``started.json`` records ``inputs``."""
    started = work_dir / STARTED
    record, reason = read_record(started)
    if record is not None and record.get('inputs') == inputs:
        print(f'[{tag}] {work_dir}: continuing the attempt that {started} records '
              f'(steps done: {", ".join(record.get("steps", {})) or "none"})', flush=True)
        return
    if not started.exists():
        reason = f'no {started} records the inputs its files came from'
    elif record is not None:
        changed = sorted(key for key in {*(record.get('inputs') or {}), *(inputs or {})}
                         if (record.get('inputs') or {}).get(key) != (inputs or {}).get(key))
        reason = f'its inputs changed ({", ".join(changed) or "all of them"}) since {started} was written'
    work_dir.mkdir(parents=True, exist_ok=True)
    move_aside(work_dir, reason, tag)
    write_record(started, dict(inputs=inputs, started=utc_now(), steps={}))


def move_aside(work_dir: Path, reason: str, tag: str) -> Optional[Path]:
    """Move an earlier attempt's files in ``work_dir`` (all but :data:`KEPT_IN_PLACE`) into a new
    ``stale-<UTC time>/`` there and say why (``reason``); that folder, None if there was nothing."""
    earlier = sorted(path for path in work_dir.iterdir()
                     if not any(fnmatch.fnmatch(path.name, pattern) for pattern in KEPT_IN_PLACE))
    if not earlier:
        return None
    stamp = datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    stale, number = work_dir / f'{STALE}{stamp}', 1
    while stale.exists():
        number += 1
        stale = work_dir / f'{STALE}{stamp}-{number}'
    stale.mkdir()
    for path in earlier:
        path.rename(stale / path.name)
    checkpoints = [path.name for path in earlier if path.suffix == '.pth']
    print(f'[{tag}] {work_dir}: starting afresh, not resuming: {reason}; the earlier attempt\'s '
          f'{len(earlier)} file(s) (checkpoints: {", ".join(checkpoints) or "none"}) moved to {stale}',
          flush=True)
    return stale


def step(work_dir: Path, name: str, run: Callable[[], dict], tag: str) -> dict:
    """``run()``'s result (a JSON-able dict), run once per attempt at the stage in ``work_dir``:
    recorded in ``started.json`` when it returns, so a later attempt with the same inputs reads
    it back instead, unless a file it names in ``files`` is gone."""
    started = work_dir / STARTED
    record, reason = read_record(started)
    if record is None:
        raise RuntimeError(f'step {name} of the stage in {work_dir}: {reason} (begin_attempt writes it)')
    done = record.setdefault('steps', {}).get(name)
    missing = [path for path in (done or {}).get('result', {}).get('files', []) if not Path(path).is_file()]
    if done is not None and not missing:
        print(f'[{tag}] {work_dir}: {name}: done in an earlier attempt ({started})', flush=True)
        return done['result']
    if missing:
        print(f'[{tag}] {work_dir}: {name} again: {missing[0]}, which it made, is gone', flush=True)
    result = run()
    record['steps'][name] = dict(result=result, finished=utc_now())
    write_record(started, record)
    return result


def train(launcher: Launcher, config, work_dir: Path, options: Sequence[str] = ()) -> Path:
    """The stage's training (:func:`step` ``train``): ``launcher`` trains ``config`` into
    ``work_dir`` with ``--cfg-options options``, resuming (mmengine's ``--resume``) from the
    newest checkpoint an earlier attempt left there (:func:`resume_checkpoint`); the last
    checkpoint."""
    def run():
        checkpoint = launcher.train(config, work_dir, options, resume=resume_checkpoint(work_dir, launcher.tag))
        return dict(checkpoint=str(checkpoint), files=[str(checkpoint)])
    return Path(step(work_dir, 'train', run, launcher.tag)['checkpoint'])


def resume_checkpoint(work_dir: Path, tag: str) -> Optional[Path]:
    """The training checkpoint in ``work_dir`` that got furthest (mmengine's ``meta['iter']``)
    of those that load, printing ``resumed from epoch K (path)``; one that does not load (a
    kill while it was written) is passed over, saying so. None, and nothing printed, if
    there is none."""
    best, best_iter = None, -1
    for path in sorted(work_dir.glob('*.pth')):
        if not CHECKPOINT_NAME.fullmatch(path.name):
            continue
        try:  # mmap: the tensors are not read
            meta = torch.load(path, map_location='cpu', mmap=True, weights_only=True)['meta']
            iteration = int(meta['iter'])
        except Exception as error:  # noqa: BLE001  any damage: unreadable, not a zip, no meta
            print(f'[{tag}] {work_dir}: not resuming from {path}: it does not load '
                  f'({type(error).__name__}: {error})', flush=True)
            continue
        if iteration > best_iter:
            best, best_iter, best_meta = path, iteration, meta
    if best is None:
        return None
    by_epoch = CHECKPOINT_NAME.fullmatch(best.name).group(1) == 'epoch'
    where = f'epoch {best_meta["epoch"]}' if by_epoch else f'iteration {best_iter}'
    print(f'[{tag}] {work_dir}: resumed from {where} ({best})', flush=True)
    return best


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


FINAL = 'final'  # the kind of a graph's last stage (the results table): it records nothing


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of an experiment: ``name`` (e.g. ``seed0/pretrain_fd``, also its work folder
    under the experiment's), what it does, its ``kind`` (what sort of step: the graph's own
    kinds, e.g. the pipeline's pretrainings and detections, or :data:`FINAL`), the pipeline
    ``arm`` or the sweep ``cell`` it belongs to, its ``seed`` (None for the final stage), the
    names of the stages whose records it ``needs``, and its ``work_dir`` (``done.json`` there
    once complete). A final stage (the results table, seconds) records nothing and runs every
    time."""
    name: str
    description: str
    work_dir: Path
    kind: str
    needs: Tuple[str, ...] = ()
    arm: Optional[str] = None
    cell: Optional[str] = None
    seed: Optional[int] = None

    @property
    def final(self) -> bool:
        return self.kind == FINAL


class StageObserver:
    """What a :meth:`StageGraph.run_all` tells as it goes (the progress display,
    ``fdrop_mm.experiments.progress``, is one): each stage ``skipped`` (complete, with its
    record), ``started``, and ``ended`` (``ran`` or ``failed``)."""

    def skipped(self, stage: Stage, record: dict) -> None:
        """``stage`` was complete (``record``): not run."""

    def started(self, stage: Stage) -> None:
        """``stage`` starts running."""

    def ended(self, stage: Stage, status: str) -> None:
        """``stage`` stopped running: ``status`` ``ran`` or ``failed`` (its error follows)."""


class StageGraph:
    """An experiment's stages, run in order (``run_all``) or one by one (``run_stage``, what a
    Slurm job calls). Subclasses give ``build_stages``, each stage's ``read_inputs`` and
    ``produce``, what to ``prepare`` before any stage, and the ``tool`` with the ``arguments``
    that make this experiment (a stage's job runs ``tool *arguments --stage NAME``). The stages
    are built, and each one's inputs read (configs parsed and hashed), once per graph: a graph
    describes one run, so one made before its configs or data change does not see the change."""
    tag = 'experiment'
    tool: Path

    def arguments(self) -> List[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """What every stage reads and the driver makes first (e.g. tiny data)."""

    def run(self) -> Optional[str]:
        """``prepare``, then every stage (``run_all``); the table."""
        raise NotImplementedError

    def build_stages(self) -> List[Stage]:
        """Every stage in run order; the final one last."""
        raise NotImplementedError

    def read_inputs(self, stage: Stage) -> Optional[dict]:
        """What ``stage`` is made from (see :func:`run_stage`); a change reruns it."""
        return None

    def produce(self, stage: Stage, upstream: Dict[str, dict], work_dir: Path) -> dict:
        """Run ``stage`` into ``work_dir`` from its needed stages' records; its record."""
        raise NotImplementedError

    @functools.cached_property
    def stages_by_name(self) -> Dict[str, Stage]:
        return {stage.name: stage for stage in self.build_stages()}

    @functools.cached_property
    def inputs_by_name(self) -> Dict[str, Optional[dict]]:
        return {}

    def stages(self) -> List[Stage]:
        """Every stage in run order (built once: :meth:`build_stages`)."""
        return list(self.stages_by_name.values())

    def stage(self, name: str) -> Stage:
        if name not in self.stages_by_name:
            raise ValueError(f'--stage {name!r}: no such stage; the stages are '
                             f'{", ".join(self.stages_by_name)}')
        return self.stages_by_name[name]

    def inputs(self, stage: Stage) -> Optional[dict]:
        """``stage``'s inputs (:meth:`read_inputs`), read once per graph."""
        if stage.name not in self.inputs_by_name:
            self.inputs_by_name[stage.name] = self.read_inputs(stage)
        return self.inputs_by_name[stage.name]

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

    def run_all(self, observer: Optional[StageObserver] = None) -> dict:
        """Every stage in order, complete ones skipped, each step told to ``observer``; the final
        stage's record. A failing stage's error is raised once ``observer`` has been told."""
        observer = observer or StageObserver()
        record: dict = {}
        for stage in self.stages():
            existing, _ = self.record(stage)
            if existing is not None:
                observer.skipped(stage, existing)
                record = self.run_stage(stage.name)
                continue
            observer.started(stage)
            status = 'failed'
            try:
                record = self.run_stage(stage.name)
                status = 'ran'
            finally:
                observer.ended(stage, status)
        return record


def parse_cfg_options(options: Sequence[str]) -> dict:
    """``key=value`` strings read as tools/train.py's ``--cfg-options`` reads them."""
    parser = argparse.ArgumentParser(prog='--cfg-options')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options] if options else []).cfg_options


def training_inputs(config, options: Sequence[str], env: Optional[Mapping[str, str]],
                    data_folders: Sequence[Path], upstream: Optional[dict] = None) -> dict:
    """What a training stage reads: ``config`` (relative to the repository) with all it inherits
    and its ``options`` under ``env`` (one hash, :func:`config_sha256`), the manifests of the
    generated datasets among ``data_folders`` (``fdrop_mm.tiny_data``; regenerated data
    changes them) and the ``upstream`` stage's inputs."""
    manifests = {folder.name: json.loads((folder / MANIFEST).read_text())
                 for folder in data_folders if (folder / MANIFEST).is_file()}
    return dict(config=str(config), config_sha256=config_sha256(config, options, env),
                options=list(options), data=manifests, upstream=upstream)


def config_sha256(config, options: Sequence[str] = (), env: Optional[dict] = None) -> str:
    """sha256 of the config a run trains: ``config`` (relative to the repository) with all it
    inherits, read under the environment variables ``env`` as the run reads them, with
    ``options`` applied, as mmengine's ``pretty_text``."""
    cfg = read_config(config, env)
    cfg.merge_from_dict(parse_cfg_options(options))
    return hashlib.sha256(cfg.pretty_text.encode()).hexdigest()


def env_placeholder(variable: str) -> 're.Pattern':
    """mmengine's ``{{$VARIABLE:default}}`` for ``variable`` (its ``Config._substitute_env_variables``)."""
    return re.compile(r'\{\{[\'"]?\s*\$' + re.escape(variable) + r'\s*:\s*\S*?\s*[\'"]?\}\}')


def read_config(config, env: Optional[Mapping[str, str]] = None) -> Config:
    """``config`` (relative to the repository) as a run under the environment variables ``env``
    reads it. mmengine fills ``{{$VAR:default}}`` from ``os.environ`` in each file it reads and
    takes no environment of its own, so with ``env`` the config is read from a copy of its folder
    tree (configs/, else the config's own folder: its ``.py`` files) in which ``env``'s
    variables are filled in; others are left to mmengine, as in the run. mmengine logs each
    variable it fills ("Using env variable ..."): the driver reads configs only to hash or check
    them, so those lines are kept out of its output (the stage's own log has them)."""
    path = REPO / config
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        if not env:
            return Config.fromfile(path)
        root = CONFIGS if path.is_relative_to(CONFIGS) else path.parent
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / root.name
            shutil.copytree(root, copy, ignore=lambda parent, names: [
                name for name in names if not (name.endswith('.py') or Path(parent, name).is_dir())])
            for file in copy.rglob('*.py'):
                text = filled = file.read_text()
                for variable, value in env.items():
                    filled = env_placeholder(variable).sub(lambda _: value, filled)
                if filled != text:
                    file.write_text(filled)
            return Config.fromfile(copy / path.relative_to(root))
    finally:
        logger.setLevel(level)
