"""Live progress of an experiment's stages (the pipeline's, a sweep's), read from each stage's
own mmengine log while it runs: the stage (k of n, arm, seed, what it does), its epoch,
iteration of iterations, loss and mmengine's ETA, and the whole job's ETA; at the end a table of
each stage's wall time (also ``stage_times.md`` in the experiment's folder).

mmengine's ``LoggerHook`` writes ``<work_dir>/<timestamp>/<timestamp>.log`` (tools/test.py's
under ``<work_dir>/test/``), one line per ``interval`` iterations, e.g.
``Epoch(train)  [3][ 20/40]  lr: ...  eta: 0:01:05  time: ...  loss: 2.3121``; the run's
config is dumped beside it as ``vis_data/config.py`` (``train_cfg.max_epochs``). Nothing here
writes to those folders. On a terminal the display is rich's; otherwise (a log file, CI) plain
lines, one when a stage starts or ends, when a log's epoch or phase changes, and at most every
``interval`` seconds in between.
"""
import dataclasses
import datetime
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, TextIO, Tuple

from fdrop_mm.config_text import parse_config_text

from .stages import Stage, StageGraph, StageObserver

LOG_LINE = re.compile(r'(?P<mode>Epoch|Iter)\((?P<phase>train|val|test)\)\s*(?:\[(?P<epoch>\d+)\])?'
                      r'\s*\[\s*(?P<iteration>\d+)/(?P<iterations>\d+)\](?P<rest>.*)$')
ETA = re.compile(r'eta: (?P<eta>(?:(?P<days>\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d))')
LOSS = re.compile(r'(?:^|\s)loss: (?P<loss>\S+)')
PLAIN_INTERVAL_S = 30.0
SKIPPED = 'skipped: was complete'
POLL_S = 1.0


@dataclasses.dataclass(frozen=True)
class LogProgress:
    """The last progress line of a mmengine log: ``phase`` train, val or test; ``epoch`` (of
    ``max_epochs``) for epoch-based loops; ``iteration`` of ``iterations`` (in the epoch, or
    overall for iteration-based training); the training ``loss`` and ``eta_s`` (mmengine's ETA
    of the phase) where the line has them."""
    log: Path
    phase: str
    iteration: int
    iterations: int
    epoch: Optional[int] = None
    max_epochs: Optional[int] = None
    loss: Optional[float] = None
    eta_s: Optional[float] = None

    @property
    def fraction(self) -> float:
        """The share of the phase done (training: over all epochs)."""
        if self.epoch is not None and self.max_epochs and self.phase == 'train':
            return ((self.epoch - 1) * self.iterations + self.iteration) / (self.max_epochs * self.iterations)
        return self.iteration / self.iterations

    def describe(self) -> str:
        """E.g. ``training epoch 3/4, iter 20/40, loss 2.3121, ETA 0:01:05``."""
        if self.phase == 'train':
            epoch = f' epoch {self.epoch}/{self.max_epochs or "?"},' if self.epoch is not None else ''
            text = f'training{epoch} iter {self.iteration}/{self.iterations}'
        elif self.phase == 'val':
            after = f' after epoch {self.epoch},' if self.epoch is not None else ''
            text = f'validating{after} iter {self.iteration}/{self.iterations}'
        else:
            text = f'testing iter {self.iteration}/{self.iterations}'
        if self.loss is not None:
            text += f', loss {self.loss:.4f}'
        if self.eta_s is not None:
            text += f', ETA {format_duration(self.eta_s)}'
        return text


def format_duration(seconds: Optional[float]) -> str:
    """``H:MM:SS`` (``1 day, H:MM:SS``), as mmengine writes its ETA; '?' for None."""
    return '?' if seconds is None else str(datetime.timedelta(seconds=int(round(seconds))))


def parse_log_line(line: str, log: Path, max_epochs: Optional[int] = None) -> Optional[LogProgress]:
    """The progress in one mmengine log line, None if the line is not a loop's progress line."""
    match = LOG_LINE.search(line)
    if match is None:
        return None
    rest = match['rest']
    eta, loss = ETA.search(rest), LOSS.search(rest)
    eta_s = None
    if eta:
        eta_s = float(int(eta['days'] or 0) * 86400 + int(eta['h']) * 3600 + int(eta['m']) * 60
                      + int(eta['s']))
    try:
        loss_value = float(loss['loss']) if loss else None
    except ValueError:
        loss_value = None
    return LogProgress(log=log, phase=match['phase'], iteration=int(match['iteration']),
                       iterations=int(match['iterations']),
                       epoch=int(match['epoch']) if match['epoch'] else None,
                       max_epochs=max_epochs if match['epoch'] else None, loss=loss_value, eta_s=eta_s)


def logged_max_epochs(log: Path) -> Optional[int]:
    """``train_cfg.max_epochs`` of the run that writes ``log``, from the config mmengine dumped
    beside it (``vis_data/config.py``), read without executing it; None if absent."""
    config = log.parent / 'vis_data' / 'config.py'
    if not config.is_file():
        return None
    try:
        train_cfg = parse_config_text(config.read_text())[0].get('train_cfg')
    except SyntaxError:
        return None
    value = train_cfg.get('max_epochs') if isinstance(train_cfg, dict) else None
    return value if isinstance(value, int) else None


def stage_logs(work_dir: Path, since: float = 0.0) -> List[Path]:
    """mmengine logs of a stage (``<ts>/<ts>.log``, ``test/<ts>/<ts>.log``) written at or after
    ``since`` (a ``time.time()``), oldest first."""
    logs = [log for pattern in ('*/*.log', '*/*/*.log') for log in work_dir.glob(pattern)
            if log.stem == log.parent.name and log.stat().st_mtime >= since]
    return sorted(logs, key=lambda log: log.stat().st_mtime)


class LogFollower:
    """The newest mmengine log of a stage folder, read as it grows: the last progress line, and
    the last training one (whose loss and ETA stay shown while the run validates)."""

    def __init__(self, work_dir: Path, since: float):
        self.work_dir, self.since = work_dir, since
        self.log: Optional[Path] = None
        self.offset = 0
        self.buffer = ''
        self.max_epochs: Optional[int] = None
        self.last: Optional[LogProgress] = None
        self.last_train: Optional[LogProgress] = None

    def poll(self) -> Optional[LogProgress]:
        logs = stage_logs(self.work_dir, self.since)
        if logs and logs[-1] != self.log:
            self.log, self.offset, self.buffer, self.last = logs[-1], 0, '', None
            self.max_epochs = None
        if self.log is None:
            return None
        if self.max_epochs is None:
            self.max_epochs = logged_max_epochs(self.log)
        with open(self.log, errors='replace') as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        lines = (self.buffer + text).split('\n')
        self.buffer = lines.pop()  # an unfinished line waits for its end
        for line in lines:
            progress = parse_log_line(line, self.log, self.max_epochs)
            if progress is not None:
                self.last = progress
                if progress.phase == 'train':
                    self.last_train = progress
        return self.last


@dataclasses.dataclass
class StageTime:
    stage: Stage
    status: str  # 'ran', SKIPPED, 'failed'
    wall_s: Optional[float]  # a skipped stage: how long it took when it ran, if recorded


def same_step(stage: Stage) -> Tuple[str, Optional[str]]:
    """Stages whose durations predict each other: the same kind of stage, arm or cell, in
    another seed."""
    return stage.kind, stage.arm or stage.cell


class JobProgress(StageObserver):
    """What the driver shows while a :class:`StageGraph` runs (see the module's docstring): it
    observes the graph's ``run_all``."""

    def __init__(self, graph: StageGraph, out: Optional[TextIO] = None, tty: Optional[bool] = None,
                 interval: float = PLAIN_INTERVAL_S, poll_s: float = POLL_S):
        self.graph = graph
        self.stages = graph.stages()
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.interval, self.poll_s = interval, poll_s
        self.times: List[StageTime] = []
        self.current: Optional[Stage] = None
        self.started_at = 0.0
        self.follower: Optional[LogFollower] = None
        self.watcher: Optional[threading.Thread] = None  # polls the current stage's log
        self.stop_watching = threading.Event()
        self.lock = threading.Lock()
        self.live = None  # rich's Progress while the graph runs on a terminal
        self.job_task = self.stage_task = None  # its two bars

    # estimates -------------------------------------------------------------
    def known_durations(self) -> Tuple[Dict[tuple, float], Dict[str, float]]:
        """Mean wall time of the stages that ran or recorded their time: per step
        (:func:`same_step`) and per kind."""
        by_step: Dict[tuple, List[float]] = {}
        by_kind: Dict[str, List[float]] = {}
        for entry in self.times:
            if entry.wall_s is not None and entry.status != 'failed':
                by_step.setdefault(same_step(entry.stage), []).append(entry.wall_s)
                by_kind.setdefault(entry.stage.kind, []).append(entry.wall_s)
        return ({step: statistics.mean(values) for step, values in by_step.items()},
                {kind: statistics.mean(values) for kind, values in by_kind.items()})

    def job_eta(self) -> str:
        """The job's remaining time: the current stage's (mmengine's training ETA while its
        training log is the newest, validations included; else its step's duration less the time
        spent) plus each stage to come by the mean duration of its step, else of its kind, else
        by the running stage's whole duration (elapsed plus remaining) where that is of its kind.
        ``about`` says that stages' durations were estimated from others'; a stage with no
        estimate is counted (``≥ ... (+N stages not yet timed)``), not guessed."""
        by_step, by_kind = self.known_durations()
        remaining, untimed, about = 0.0, 0, False
        running = None  # the whole duration estimated for the current stage
        if self.current is not None:
            elapsed = time.monotonic() - self.started_at
            step = same_step(self.current)
            last = self.follower and self.follower.last
            train = self.follower and self.follower.last_train
            if last is not None and train is not None and train.log == last.log and train.eta_s is not None:
                remaining += train.eta_s
                running = elapsed + train.eta_s
            elif step in by_step or self.current.kind in by_kind:
                running = by_step.get(step, by_kind.get(self.current.kind))
                remaining += max(running - elapsed, 0.0)
                about = True
            elif not self.current.final:
                untimed += 1
        done = {entry.stage.name for entry in self.times}
        after = [s for s in self.stages if s.name not in done and s != self.current and not s.final]
        for stage in after:
            if same_step(stage) in by_step:
                remaining += by_step[same_step(stage)]
            elif stage.kind in by_kind:
                remaining += by_kind[stage.kind]
            elif running is not None and stage.kind == self.current.kind:
                remaining += running
            else:
                untimed += 1
                continue
            about = True
        text = ('about ' if about else '') + format_duration(remaining)
        if untimed:
            text = f'≥ {text} (+{untimed} stage{"s" if untimed > 1 else ""} not yet timed)'
        return text

    # what is shown -----------------------------------------------------------
    def heading(self, stage: Stage) -> str:
        index = self.stages.index(stage) + 1
        who = ', '.join(part for part in (stage.arm and f'arm {stage.arm}', stage.cell and f'cell {stage.cell}',
                                          stage.seed is not None and f'seed {stage.seed}') if part)
        return f'stage {index}/{len(self.stages)} {stage.name}' + (f' ({who})' if who else '')

    def status_line(self) -> str:
        """The current stage and its log's progress (while it validates or tests, also its last
        training line), elapsed time and the job's ETA."""
        progress = self.follower.last if self.follower else None
        train = self.follower.last_train if self.follower else None
        if progress is None:
            shown = 'starting (no mmengine log yet)'
        elif progress.phase != 'train' and train is not None and train.log == progress.log:
            shown = f'{progress.describe()} (training: {train.describe()})'
        else:
            shown = progress.describe()
        return (f'[{self.graph.tag}] {self.heading(self.current)}: {shown}; elapsed '
                f'{format_duration(time.monotonic() - self.started_at)}; job ETA {self.job_eta()}')

    def say(self, text: str) -> None:
        with self.lock:
            if self.live is not None:
                self.live.console.print(text, markup=False, highlight=False)
            else:
                print(text, file=self.out, flush=True)

    # running -------------------------------------------------------------
    def run(self) -> dict:
        """Every stage of the graph in order (``run_all``), complete ones skipped, with the
        progress shown; the final stage's record. A failing stage is in the table, then its
        error is raised."""
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
            self.live = Progress(TextColumn('{task.description}'), BarColumn(), TaskProgressColumn(),
                                 TextColumn('{task.fields[detail]}'),
                                 console=Console(file=self.out, force_terminal=True))
            self.live.start()
            self.job_task = self.live.add_task('job', total=len(self.stages), detail='')
            self.stage_task = self.live.add_task('stage', total=1.0, detail='')
        try:
            return self.graph.run_all(self)
        finally:
            if self.live is not None:
                self.live.stop()
                self.live = None
            table = self.table()
            print(table, file=self.out, flush=True)
            self.table_path().write_text(table)

    def table_path(self) -> Path:
        """``stage_times.md`` in the experiment's folder (the final stage's)."""
        final = [stage for stage in self.stages if stage.final]
        folder = final[0].work_dir if final else self.stages[0].work_dir.parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder / 'stage_times.md'

    def skipped(self, stage: Stage, record: dict) -> None:
        self.times.append(StageTime(stage, SKIPPED, record.get('wall_s')))
        self.say(f'[{self.graph.tag}] {self.heading(stage)}: complete, skipped')
        self.show_job()

    def started(self, stage: Stage) -> None:
        self.current, self.started_at = stage, time.monotonic()
        self.follower = LogFollower(stage.work_dir, since=time.time() - 1)
        self.say(f'[{self.graph.tag}] {self.heading(stage)}: start: {stage.description}')
        if self.live is not None:
            self.live.update(self.stage_task, description=f'stage {self.stages.index(stage) + 1}/'
                             f'{len(self.stages)} {stage.name}', completed=0.0, detail='starting')
        self.stop_watching = threading.Event()
        self.watcher = threading.Thread(target=self.watch, args=(self.stop_watching, ), daemon=True)
        self.watcher.start()

    def ended(self, stage: Stage, status: str) -> None:
        self.stop_watching.set()
        self.watcher.join()
        wall = time.monotonic() - self.started_at
        self.times.append(StageTime(stage, status, wall))
        self.current, self.follower = None, None
        self.say(f'[{self.graph.tag}] {self.heading(stage)}: {status} in {format_duration(wall)}')
        self.show_job()

    def watch(self, stop: threading.Event) -> None:
        """Poll the stage's log until ``stop``: update the terminal display, or print a plain line
        on a change of log, phase or epoch and at most every ``interval`` seconds in between."""
        last_printed, last_key = 0.0, None
        while not stop.wait(self.poll_s):
            progress = self.follower.poll()
            if self.live is not None:
                train = self.follower.last_train
                same_log = progress is not None and train is not None and train.log == progress.log
                bar = train if same_log else progress  # validating: the training's share
                self.live.update(self.stage_task, completed=bar.fraction if bar else 0.0,
                                 detail=progress.describe() if progress else self.current.description)
                self.show_job()
                continue
            key = progress and (progress.log, progress.phase, progress.epoch)
            now = time.monotonic()
            if progress is not None and (key != last_key or now - last_printed >= self.interval):
                self.say(self.status_line())
                last_printed, last_key = now, key

    def show_job(self) -> None:
        """The terminal display's job line: stages done and the job's ETA."""
        if self.live is not None:
            self.live.update(self.job_task, completed=len(self.times),
                             detail=f'{len(self.times)}/{len(self.stages)} stages, job ETA {self.job_eta()}')

    def table(self) -> str:
        """Each stage's wall time, markdown."""
        lines = [f'## Stage wall times ({self.graph.tag})', '',
                 '| # | stage | arm or cell | seed | what | status | wall time |', '|---|---|---|---|---|---|---|']
        for entry in self.times:
            stage = entry.stage
            wall = format_duration(entry.wall_s) if entry.wall_s is not None else '–'
            if entry.status == SKIPPED and entry.wall_s is not None:
                wall += ' (when it ran)'
            lines.append(f'| {self.stages.index(stage) + 1} | {stage.name} | {stage.arm or stage.cell or "–"} | '
                         f'{"–" if stage.seed is None else stage.seed} | {stage.description} | '
                         f'{entry.status} | {wall} |')
        ran = sum(entry.wall_s for entry in self.times if entry.status != SKIPPED
                  and entry.wall_s is not None)
        lines += ['', f'Total wall time of this run: {format_duration(ran)}']
        return '\n'.join(lines) + '\n'
