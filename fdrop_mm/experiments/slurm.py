"""An experiment's stage graph (``stages.StageGraph``: the pipeline, a sweep) submitted to Slurm
at once: one ``sbatch`` job per stage that is not complete, each depending on the jobs of the
stages it needs (``--dependency=afterok:...``, ``--kill-on-invalid-dep=yes``: a failed stage's
dependants never run), so arms and seeds train side by side and the driver exits after
submitting. A job runs its tool with ``--stage NAME`` (tools/run_pipeline.py, tools/run_sweep.py),
which trains through tools/slurm_train.sh: ``srun`` inside the job's allocation, one task per GPU.

Each submitted stage records its job in ``<job folder>/submitted.json`` (the stage's work folder;
the final stage's is ``<work_dir>/<name>/``), its output in ``slurm-<job id>.out`` there. A rerun
skips complete stages, leaves queued or running jobs alone (``scontrol show job``), reports each
stage whose job ended without completing it (state, exit code, log: a time limit, preemption,
``scancel``, a node failure or a failed training) and submits it again; its training resumes from
its last checkpoint (``--stage NAME`` runs the stage, which resumes).

A training job ends at its time limit in a state that continues by itself: it is submitted with
``--requeue`` (Slurm requeues it after a node failure or a preemption) and
``--signal=B:USR1@<stop_before_s>``; the batch script traps that warning and writes
``stop_requested`` into the stage's folder, the training stops at the next iteration boundary
(fdrop_mm.engine.hooks.StopOnRequestHook: a checkpoint there for iteration-based loops, the last
epoch's checkpoint for epoch-based ones), and if it saved a checkpoint during the job, the job
requeues itself (``scontrol requeue``) and resumes when it starts again.
"""
import dataclasses
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .launcher import REPO
from .records import read_record, write_record
from .stages import Stage, StageGraph

SUBMITTED = 'submitted.json'
# Seconds before the time limit at which a job is warned (sbatch --signal=B:USR1@seconds): the
# rest of an iteration, an epoch-end validation and a checkpoint must fit (Slurm may send it up to
# 60 s earlier).
DEFAULT_STOP_BEFORE_S = 300
ACTIVE_STATES = {'PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED', 'REQUEUED',
                 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'STOPPED'}
# A dependant of a failed job, on a cluster without kill_invalid_depend: pending for good.
NEVER_SATISFIED = 'DependencyNeverSatisfied'
# Ends that interrupted a stage rather than failed it: its training resumes when resubmitted.
INTERRUPTED_STATES = {'TIMEOUT', 'PREEMPTED', 'CANCELLED', 'NODE_FAIL', 'BOOT_FAIL', 'DEADLINE'}
# The job a stage's batch script runs: the tool under a trap for Slurm's time-limit warning.
STAGE_RUNNER = r"""set -uo pipefail
stop_file=$folder/stop_requested
pointer=$folder/last_checkpoint
rm -f "$stop_file"
checkpoint_at_start=$(cat "$pointer" 2>/dev/null || true)
warned=0
say() { echo "[slurm] $(date +%FT%T) job ${SLURM_JOB_ID:-}: $*"; }
on_warning() {
  warned=1
  say "SIGUSR1 (the time limit is near): asking the training to stop ($stop_file)"
  touch "$stop_file"
}
trap on_warning USR1
say "start $((${SLURM_RESTART_COUNT:-0} + 1)) on $(hostname): ${stage[*]}"
"${stage[@]}" &
stage_pid=$!
while true; do
  wait "$stage_pid"; status=$?
  # a trapped signal ends wait early (status > 128) while the stage still runs
  if [ "$status" -gt 128 ] && kill -0 "$stage_pid" 2>/dev/null; then continue; fi
  break
done
rm -f "$stop_file"
if [ "$warned" = 1 ] && [ "$status" != 0 ]; then
  if [ "$(cat "$pointer" 2>/dev/null || true)" != "$checkpoint_at_start" ]; then
    say "the stage stopped (exit $status) after its training saved $(cat "$pointer"):" \
        "requeued, it resumes from there"
    scontrol requeue "$SLURM_JOB_ID" && exit 0
  else
    say "the stage stopped (exit $status) without a checkpoint saved in this job (an epoch longer than the" \
        "time limit?): not requeued; a longer --time or checkpoints by iteration let it progress"
  fi
fi
exit "$status"
"""


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """How each training stage's job is sized, as OpenMMLab's slurm scripts take it: ``gpus``
    tasks (GPUS), ``gpus_per_node`` of them per node (GPUS_PER_NODE), ``cpus_per_task``
    (CPUS_PER_TASK), ``srun_args`` (SRUN_ARGS); ``gres`` per node (default ``gpu:<gpus_per_node>``,
    '' for none: CPU nodes), ``time`` limit (sbatch's ``--time``, default the partition's) and
    ``sbatch_args`` given to every ``sbatch``, and ``stop_before_s``: how long before the time
    limit a training is asked to stop (``--signal=B:USR1@<seconds>``)."""
    partition: str
    gpus: int = 8
    gpus_per_node: int = 8
    cpus_per_task: int = 5
    gres: Optional[str] = None
    time: Optional[str] = None
    srun_args: str = ''
    sbatch_args: Sequence[str] = ()
    stop_before_s: int = DEFAULT_STOP_BEFORE_S

    def __post_init__(self):
        for name in ('gpus', 'gpus_per_node', 'cpus_per_task'):
            if getattr(self, name) < 1:
                raise ValueError(f'--{name.replace("_", "-")} {getattr(self, name)}: needs at least 1')
        if not 1 <= self.stop_before_s <= 65535:
            raise ValueError(f'--stop-before {self.stop_before_s}: seconds from 1 to 65535 (sbatch --signal)')
        if not self.partition:
            raise ValueError('--launcher slurm needs --partition')

    @property
    def tasks_per_node(self) -> int:
        return min(self.gpus, self.gpus_per_node)

    @property
    def node_gres(self) -> str:
        return f'gpu:{self.tasks_per_node}' if self.gres is None else self.gres

    def environment(self) -> Dict[str, str]:
        """tools/slurm_train.sh's variables."""
        return dict(GPUS=str(self.gpus), GPUS_PER_NODE=str(self.tasks_per_node),
                    CPUS_PER_TASK=str(self.cpus_per_task), SRUN_ARGS=self.srun_args, GRES=self.node_gres)

    def arguments(self) -> List[str]:
        """The tools' options that give these settings (what a stage's job runs with)."""
        return ['--launcher', 'slurm', '--partition', self.partition, '--gpus', str(self.gpus),
                '--gpus-per-node', str(self.gpus_per_node), '--cpus-per-task', str(self.cpus_per_task),
                '--gres', self.node_gres or 'none',
                *([f'--srun-args={self.srun_args}'] if self.srun_args else [])]

    def resources(self, stage: Stage) -> List[str]:
        """``#SBATCH`` lines: a training stage's GPUs and CPUs and its time-limit warning; one CPU
        for the final stage."""
        lines = [f'--partition={self.partition}']
        if stage.final:
            lines += ['--ntasks=1', '--cpus-per-task=1']
        else:
            lines += [f'--nodes={math.ceil(self.gpus / self.tasks_per_node)}', f'--ntasks={self.gpus}',
                      f'--ntasks-per-node={self.tasks_per_node}', f'--cpus-per-task={self.cpus_per_task}',
                      *([f'--gres={self.node_gres}'] if self.node_gres else []),
                      f'--signal=B:USR1@{self.stop_before_s}']
        return lines + ([f'--time={self.time}'] if self.time else [])


def job_dir(stage: Stage) -> Path:
    """Where ``stage``'s job script, ``submitted.json`` and Slurm output go."""
    return stage.work_dir / stage.name if stage.final else stage.work_dir


def batch_script(graph: StageGraph, stage: Stage, options: SlurmOptions) -> str:
    """The sbatch script of ``stage``: its resources, output file (appended to when the job is
    requeued), and its tool with ``--stage`` under a trap for the time-limit warning
    (``STAGE_RUNNER``; see the module's docstring)."""
    command = [sys.executable, '-u', str(graph.tool), *graph.arguments(), *options.arguments(),
               '--stage', stage.name]
    header = [f'--job-name={graph.tag}:{stage.name}', *options.resources(stage),
              f'--output={job_dir(stage) / "slurm-%j.out"}', '--open-mode=append',
              '--kill-on-invalid-dep=yes', '--requeue']
    return '\n'.join(['#!/usr/bin/env bash', *(f'#SBATCH {line}' for line in header),
                      f'# {stage.description}',
                      f'# needs: {", ".join(stage.needs) or "nothing"}',
                      f'cd {shlex.quote(str(REPO))}', f'folder={shlex.quote(str(job_dir(stage)))}',
                      f'stage=({shlex.join(command)})', STAGE_RUNNER])


def job_state(job_id: str) -> Dict[str, str]:
    """``scontrol show job``'s fields of ``job_id`` (JobState, Reason, ExitCode, StdOut, ...);
    empty once Slurm has forgotten the job (``MinJobAge`` after it ended)."""
    proc = subprocess.run(['scontrol', 'show', 'job', '--oneliner', job_id], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        if 'Invalid job id' in proc.stderr:
            return {}
        raise RuntimeError(f'scontrol show job {job_id} failed (exit {proc.returncode}): '
                           f'{proc.stderr.strip()}; is slurmctld reachable?')
    return dict(field.split('=', 1) for field in proc.stdout.split() if '=' in field)


def sbatch_command(script: Path, dependencies: Sequence[str], options: SlurmOptions) -> List[str]:
    """The command that submits ``script`` to run after the jobs ``dependencies`` succeed."""
    return ['sbatch', '--parsable', *options.sbatch_args,
            *([f'--dependency=afterok:{":".join(dependencies)}'] if dependencies else []), str(script)]


def sbatch(script: Path, dependencies: Sequence[str], options: SlurmOptions) -> str:
    """Submit ``script`` after ``dependencies`` succeed; the job id."""
    command = sbatch_command(script, dependencies, options)
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f'{shlex.join(command)} failed (exit {proc.returncode}): {proc.stderr.strip()}')
    return proc.stdout.strip().split(';')[0]


def previous_job(stage: Stage, tag: str) -> Optional[dict]:
    """The job last submitted for ``stage`` (its ``submitted.json``) with its Slurm state; None
    if there is none, or if the record is unreadable or corrupt (said, naming it: the stage is
    then submitted as if it never was)."""
    record_file = job_dir(stage) / SUBMITTED
    record, reason = read_record(record_file)
    if record is not None and not isinstance(record.get('job_id'), str):
        record, reason = None, f'{record_file} is corrupt: no job_id'
    if record is None:
        if record_file.exists():
            print(f'[{tag}] {stage.name}: {reason}; its job, if it has one, is unknown: treated as not '
                  'submitted (check squeue for a duplicate)', flush=True)
        return None
    state = job_state(record['job_id'])
    return dict(record, state=state.get('JobState', 'ENDED'), reason=state.get('Reason', ''),
                exit_code=state.get('ExitCode', '?'))


def report_unfinished(tag: str, stage: Stage, job: dict) -> str:
    """The line for a job that ended without completing ``stage``: INTERRUPTED (a time limit,
    preemption, scancel, a node failure) or FAILED, with state, exit code and log."""
    kind = 'INTERRUPTED' if job['state'] in INTERRUPTED_STATES else 'FAILED'
    state = ('state unknown: Slurm no longer lists it' if job['state'] == 'ENDED'
             else f'{job["state"]}, exit code {job["exit_code"]}')
    return (f'[{tag}] {kind}: stage {stage.name} did not complete in job {job["job_id"]} ({state}); '
            f'its log: {job["log"]}')


def submit(graph: StageGraph, options: SlurmOptions, dry_run: bool = False) -> Dict[str, str]:
    """Submit every stage of ``graph`` that is neither complete nor queued or running, each after
    the jobs of the stages it needs; print the job graph and how to follow it. With ``dry_run``
    print the sbatch scripts and submit nothing. Returns stage name -> job id (the jobs this
    experiment now waits for, new or already queued)."""
    tag = f'[{graph.tag}]'
    graph.prepare()
    jobs: Dict[str, str] = {}
    new_jobs, unfinished = set(), []
    stages = graph.stages()
    for stage in stages:
        if not stage.final and graph.record(stage)[0] is not None:
            print(f'{tag} {stage.name}: complete, skipped', flush=True)
            continue
        previous = None if dry_run else previous_job(stage, graph.tag)
        if previous:
            active = previous['state'] in ACTIVE_STATES
            # The job waited for one that is gone: a stage it needs failed (its dependency can
            # never be satisfied: Slurm cancels it, or leaves it pending for good without
            # kill_invalid_depend), or a stage it needs was just resubmitted above, so it waits
            # for the old job and would run on stale inputs. Its stage is not a failure of its
            # own: cancel the job if it is still queued and submit it after the new ones.
            never_ran = previous['reason'] == NEVER_SATISFIED or (
                active and any(need in new_jobs for need in stage.needs))
            if active and not never_ran:
                jobs[stage.name] = previous['job_id']
                print(f'{tag} {stage.name}: job {previous["job_id"]} already {previous["state"].lower()}, '
                      f'not resubmitted (log: {previous["log"]})', flush=True)
                continue
            if active:
                subprocess.run(['scancel', previous['job_id']], capture_output=True, timeout=60)
            if never_ran:  # not a failure of its own: not reported as unfinished, just resubmitted
                print(f'{tag} {stage.name}: job {previous["job_id"]} never ran (a stage it needs '
                      'failed or was resubmitted)', flush=True)
            else:
                unfinished.append(f'{stage.name} ({previous["state"]})')
                print(report_unfinished(graph.tag, stage, previous), flush=True)
        if stage.final and not jobs:
            break  # every other stage is complete: no job needed for the table
        folder = job_dir(stage)
        script = batch_script(graph, stage, options)
        upstream = [jobs[need] for need in stage.needs if need in jobs]
        if dry_run:  # the jobs it would wait for, named <stage>
            command = sbatch_command(folder / 'sbatch.sh', upstream, options)
            print(f'# --- stage {stage.name}: {" ".join(command)}\n{script}', flush=True)
            jobs[stage.name] = f'<{stage.name}>'
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'sbatch.sh').write_text(script)
        job_id = sbatch(folder / 'sbatch.sh', upstream, options)
        log = folder / f'slurm-{job_id}.out'
        write_record(folder / SUBMITTED, dict(job_id=job_id, stage=stage.name, log=str(log), after=upstream,
                                              submitted=time.strftime('%Y-%m-%dT%H:%M:%S')))
        jobs[stage.name] = job_id
        new_jobs.add(stage.name)
        print(f'{tag} {stage.name}: submitted job {job_id}'
              f'{" after " + ",".join(upstream) if upstream else ""} (log: {log})', flush=True)
    if not jobs:
        print(f'{tag} every stage is complete', flush=True)
        if not dry_run:
            print(graph.run_stage(stages[-1].name)['table'])
    elif not dry_run:
        print(f'{tag} {len(jobs)} job(s) to wait for; follow them with  squeue -j {",".join(jobs.values())}'
              '  and their logs; rerun this command to see what is left (complete stages are skipped, '
              'queued ones not resubmitted)', flush=True)
    if unfinished:
        print(f'{tag} {len(unfinished)} stage(s) resubmitted whose job ended without completing them '
              f'(their training resumes from its last checkpoint): {", ".join(unfinished)}', flush=True)
    return jobs
