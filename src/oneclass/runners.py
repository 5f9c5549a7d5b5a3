"""Running many evaluation runs: in this process, in a pool of local processes, or as Ray tasks
from one machine to a cluster.

Every runner takes `evaluation.RunTask`s and calls `evaluation.execute` for each; only the driver
(this process) writes results, as each run comes back, so an interrupted sweep keeps every run
finished before it and the next one resumes. A failing run is reported with its error and the
others go on. Ray is optional (`pip install oneclass[ray]`): without it the same tasks run here,
one after the other or `jobs` at a time in processes of the standard library's pool (one machine:
several runs sharing a GPU, or a CPU's cores). A `TimeBudget` starts only the runs that should end
within it, so a sweep fits a session, a batch job's wall time or a lease, and the rest wait for
the next call."""
from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

from tqdm.auto import tqdm

from . import evaluation
from .errors import OneClassError


@dataclass
class Failure:
    task: evaluation.RunTask
    error: str


@dataclass
class RunSummary:
    done: list[evaluation.RunTask] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    # not started: the time budget would have ended before they finished
    deferred: list[evaluation.RunTask] = field(default_factory=list)
    seconds: float = 0.0
    executor: str = "local"


@dataclass
class TimeBudget:
    """Start a run only while it should end inside `seconds` from now. A run's expected seconds:
    `estimate` (e.g. from runs stored earlier), else the median of the runs of its `kind` that
    finished in this call, else unknown: such a run starts while any time is left. Runs already
    started are never stopped by it."""
    seconds: float
    estimate: Callable[[evaluation.RunTask], float | None] = lambda task: None
    kind: Callable[[evaluation.RunTask], Hashable] = lambda task: None  # runs of one kind take alike long
    started: float = field(default_factory=time.perf_counter)
    took: dict[Hashable, list[float]] = field(default_factory=dict)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def expected(self, task: evaluation.RunTask) -> float | None:
        known = self.estimate(task)
        if known is not None:
            return known
        seen = self.took.get(self.kind(task))
        return float(statistics.median(seen)) if seen else None

    def allows(self, task: evaluation.RunTask) -> bool:
        left = self.left()
        return left > 0 and (self.expected(task) or 0.0) <= left

    def finished(self, task: evaluation.RunTask, seconds: float) -> None:
        self.took.setdefault(self.kind(task), []).append(seconds)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class _Sweep:
    """The driver's side of a sweep, whatever runs it: one progress bar with a live count of done /
    failed / running / not started, the summary, and what happens as each run ends (its records
    stored, its time told to the budget) or is left out by the budget."""

    def __init__(self, total: int, *, executor: str, results: str | Path, budget: TimeBudget | None,
                 progress: bool, echo: Callable[[str], None]) -> None:
        self.summary = RunSummary(executor=executor)
        self.results, self.budget = results, budget
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, disable=not progress, desc=f"runs ({executor})", unit="run", dynamic_ncols=True)
        self.say = self.bar.write if progress else echo
        self.running = 0

    def next_task(self, pending: list[evaluation.RunTask]) -> evaluation.RunTask | None:
        """The next pending run the budget lets start (the others it passes over are not started)."""
        while pending:
            task = pending.pop(0)
            if self.budget is None or self.budget.allows(task):
                return task
            self.summary.deferred.append(task)
            self._show(1)
        return None

    def in_flight(self, running: int) -> None:
        self.running = running
        self._show(0)

    def done(self, task: evaluation.RunTask, outcome: evaluation.RunOutcome, seconds: float) -> None:
        evaluation.store(self.results, outcome, echo=self.say)
        if self.budget is not None:
            self.budget.finished(task, seconds)
        self.summary.done.append(task)
        self._show(1)

    def failed(self, task: evaluation.RunTask, error: str) -> None:
        self.summary.failed.append(Failure(task, error))
        self.say(f"failed: {task.label}: {error}")
        self._show(1)

    def _show(self, ended: int) -> None:
        s = self.summary
        self.bar.set_postfix(done=len(s.done), failed=len(s.failed), running=self.running,
                             **({"not_started": len(s.deferred)} if s.deferred else {}), refresh=False)
        self.bar.update(ended)

    def close(self) -> RunSummary:
        self.bar.close()
        self.summary.seconds = time.perf_counter() - self.started
        return self.summary


def _error_text(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # a RayTaskError carries the worker's exception
    e = cause if isinstance(cause, BaseException) else e
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def run_local(tasks: list[evaluation.RunTask], data_root: str | Path | None, results: str | Path, *,
              jobs: int = 1, cpus_per_run: float = 1.0, budget: TimeBudget | None = None,
              progress: bool = True, echo: Callable[[str], None] = print) -> RunSummary:
    """Each run on this machine: in this process, one after the other (`jobs` 1), or `jobs` at a
    time, each in its own process with `cpus_per_run` threads."""
    if jobs < 1:
        raise OneClassError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1:
        return _run_pool(tasks, data_root, results, jobs=jobs, threads=max(1, int(cpus_per_run)), budget=budget,
                         progress=progress, echo=echo)
    sweep = _Sweep(len(tasks), executor="local", results=results, budget=budget, progress=progress, echo=echo)
    data_cache: dict[tuple, Any] = {}
    pending = list(tasks)
    try:
        while (task := sweep.next_task(pending)) is not None:
            sweep.in_flight(1)
            began = time.perf_counter()
            try:
                key = (task.spec.dataset, tuple(sorted(evaluation.data_shape(task.spec).items())))
                data = data_cache.get(key)
                if data is None:
                    data = data_cache[key] = evaluation.load_data(task.spec, data_root)
                outcome = evaluation.execute(task, data_root, results, progress=False, echo=lambda s: None, data=data)
            except Exception as e:  # noqa: BLE001 - one failing run must not stop the others
                sweep.running = 0
                sweep.failed(task, _error_text(e))
                continue
            sweep.running = 0
            sweep.done(task, outcome, time.perf_counter() - began)
    finally:
        summary = sweep.close()
    return summary


def _run_pool(tasks: list[evaluation.RunTask], data_root: str | Path | None, results: str | Path, *, jobs: int,
              threads: int, budget: TimeBudget | None, progress: bool, echo: Callable[[str], None]) -> RunSummary:
    """`jobs` runs at a time in worker processes; the driver stores each outcome as it comes back.
    A worker that dies (killed, out of memory, a crash in native code) breaks the pool: the runs
    then in flight are reported failed, and a fresh pool takes the rest."""
    sweep = _Sweep(len(tasks), executor=f"local, {jobs} processes", results=results, budget=budget,
                   progress=progress, echo=echo)
    # checkpoints and logs go where the results are: the workers share this file system
    work_dir = str(Path(results).resolve())
    root = str(Path(data_root).resolve()) if data_root else None
    # spawn, not fork: a forked child cannot use CUDA once the parent has, nor safely inherit OpenMP threads
    context = multiprocessing.get_context("spawn")

    def fresh_pool(old: ProcessPoolExecutor | None = None) -> ProcessPoolExecutor:
        if old is not None:
            old.shutdown(wait=True, cancel_futures=True)
        return ProcessPoolExecutor(max_workers=jobs, mp_context=context)

    pool = fresh_pool()
    in_flight: dict[Future, tuple[evaluation.RunTask, float]] = {}
    pending = list(tasks)
    previous_term = _stop_on_sigterm()
    try:
        while True:
            refused = False
            while len(in_flight) < jobs and (task := sweep.next_task(pending)) is not None:
                try:
                    future = pool.submit(_execute_in_worker, task, root, work_dir, threads, True)
                except BrokenProcessPool:
                    # a worker died (reported by its run's future, or not yet: it may die after
                    # another result came back): this run never started; once the runs in flight
                    # have reported, a fresh pool takes it and the rest
                    pending.insert(0, task)
                    refused = True
                    break
                in_flight[future] = task, time.perf_counter()
            sweep.in_flight(len(in_flight))
            if refused and not in_flight:
                pool = fresh_pool(pool)
                continue
            if not in_flight:
                break
            ready, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in ready:
                task, began = in_flight.pop(future)
                sweep.running = len(in_flight)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    sweep.failed(task, "BrokenProcessPool: a worker process died (killed or crashed) "
                                       "while this run was in flight")
                except Exception as e:  # noqa: BLE001 - the run's own error: report, go on
                    sweep.failed(task, _error_text(e))
                else:
                    sweep.done(task, outcome, time.perf_counter() - began)
    except BaseException:
        _stop_workers(pool)  # Ctrl-C, SIGTERM or a driver error: stored runs stay, the rest resume later
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        summary = sweep.close()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return summary


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker processes now, not after their runs: a run cut off keeps its last
    checkpoint and resumes from it. The pool's workers are this process's only multiprocessing
    children."""
    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(timeout=10)
        if child.is_alive():  # SIGTERM not acted on (a worker stuck in the kernel): SIGKILL
            child.kill()
            child.join(timeout=10)


def _execute_in_worker(task: evaluation.RunTask, data_root: str | None, work_dir: str | None, threads: int,
                       use_gpu: bool) -> evaluation.RunOutcome:
    """The body of one Ray task or pool worker's run: train and score, hand the records back to
    the driver."""
    import torch
    torch.set_num_threads(max(1, threads))
    if not use_gpu and task.spec.device == "auto":
        task.spec.device = "cpu"  # no GPU share was asked for this run: do not take one anyway
    return evaluation.execute(task, data_root, work_dir, progress=False, echo=lambda s: None)


def start_ray(address: str | None = None) -> None:
    """Connect to the cluster at `address`, or start a local Ray instance sized to this machine
    whose workers run at this process's priority: Ray starts its workers at niceness +15, so on a
    machine busy with anything else (two other training runs, in our measurement) they got almost
    no CPU and a sweep of four OC-SVM runs stood still for five minutes."""
    import ray
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, _system_config={"worker_niceness": 0}, **kwargs)


def run_ray(tasks: list[evaluation.RunTask], data_root: str | Path | None, results: str | Path, *,
            address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float | None = None,
            jobs: int | None = None, budget: TimeBudget | None = None,
            progress: bool = True, echo: Callable[[str], None] = print) -> RunSummary:
    """Each run as a Ray task: on a local Ray instance sized to this machine, or on the cluster
    at `address` ("auto" or host:port). Every node needs oneclass installed and the data root at
    the same path; results are written here, by the driver. `gpus_per_run`: the share of a GPU
    each run takes (None: 1/8 where the cluster has GPUs, else none); `jobs`: at most this many
    runs at once (None: as many as the cluster's resources fit)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        start_ray(address)
    sweep = _Sweep(len(tasks), executor="ray", results=results, budget=budget, progress=progress, echo=echo)
    in_flight: dict[Any, tuple[evaluation.RunTask, float]] = {}
    previous_term = _stop_on_sigterm()
    try:
        resources = ray.cluster_resources()
        if gpus_per_run is None:
            gpus_per_run = 0.125 if resources.get("GPU", 0) > 0 else 0.0
        if gpus_per_run > resources.get("GPU", 0):
            raise OneClassError(f"--gpus-per-run {gpus_per_run:g} but the Ray cluster has "
                                f"{resources.get('GPU', 0):g} GPU(s)")
        if cpus_per_run > resources.get("CPU", 0):
            raise OneClassError(f"--cpus-per-run {cpus_per_run:g} but the Ray cluster has "
                                f"{resources.get('CPU', 0):g} CPU(s)")
        remote = ray.remote(_execute_in_worker).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)
        # checkpoints where the results are when the workers share this file system (a local
        # instance); on a cluster each run starts afresh if it is cut off
        work_dir = str(Path(results).resolve()) if not address else None
        root = str(Path(data_root).resolve()) if data_root else None
        pending = list(tasks)
        while True:
            # only as many runs in flight as fit at once, so "running" is true and Ctrl-C is quick
            capacity = _capacity(ray.cluster_resources(), cpus_per_run, gpus_per_run)
            if jobs is not None:
                capacity = min(capacity, jobs)
            while len(in_flight) < capacity and (task := sweep.next_task(pending)) is not None:
                ref = remote.remote(task, root, work_dir, max(1, int(cpus_per_run)), gpus_per_run > 0)
                in_flight[ref] = task, time.perf_counter()
            sweep.in_flight(len(in_flight))
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                task, began = in_flight.pop(ref)
                sweep.running = len(in_flight)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - RayTaskError, a crashed worker: report, go on
                    sweep.failed(task, _error_text(e))
                else:
                    sweep.done(task, outcome, time.perf_counter() - began)
    except BaseException:
        for ref in in_flight:  # Ctrl-C or a driver error: stop the workers; stored runs stay
            ray.cancel(ref, force=True)
        raise
    finally:
        summary = sweep.close()
        if started_here:
            ray.shutdown()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return summary


def _stop_on_sigterm() -> Any:
    """A SIGTERM (`timeout`, a batch scheduler, `kill`) stops a sweep as Ctrl-C does: the running
    tasks are cancelled and Ray shut down, instead of the process dying under them."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _capacity(resources: dict[str, float], cpus: float, gpus: float) -> int:
    fits = [resources.get("CPU", 0) / cpus] if cpus > 0 else []
    if gpus > 0:
        fits.append(resources.get("GPU", 0) / gpus)
    return max(1, int(min(fits) + 1e-9)) if fits else 1
