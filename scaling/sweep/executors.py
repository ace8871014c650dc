"""Where runs execute, found by name: ``local`` (a process pool) or ``submitit`` (Slurm job arrays).

Every executor only has to run ``run_worker(cfg, run_dir, threads)`` somewhere and
hand back a future; retries, resume and bookkeeping stay in the runner, so all
executors behave the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import pickle
import threading
import time
import traceback
from typing import Callable, Type

from ..errors import ScalingError

_EXECUTORS: dict[str, Type] = {}


def register_executor(cls):
    _EXECUTORS[cls.name] = cls
    return cls


def get_executor(name: str, **kwargs):
    if name not in _EXECUTORS:
        raise ScalingError(f"unknown executor {name!r}; available: {', '.join(sorted(_EXECUTORS))}")
    return _EXECUTORS[name](**kwargs)


def _die_with_parent(parent: int) -> None:
    """End this worker when the driver that started it dies, even by ``kill -9`` (issue #10).

    Linux: the kernel sends SIGKILL when the parent exits (``PR_SET_PDEATHSIG``).
    Everywhere: a daemon thread checks ``os.getppid()`` twice a second, which also
    covers a parent that died before the signal was armed.
    """
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="scaling-parent-watch", daemon=True).start()


def _init_worker(threads: int, gpus: int = 0, counter=None, parent: int | None = None) -> None:
    import signal

    # Ctrl-C goes to the whole process group: the driver handles it and stops its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _die_with_parent(parent)
    # one thread per worker: two single-thread workers beat one two-thread run here
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if gpus and counter is not None:  # one GPU per worker, before CUDA is first touched
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_for(index, gpus)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def gpu_count() -> int:
    """GPUs torch can see here (0 without torch or CUDA); counted without starting CUDA in this process."""
    try:
        import torch
    except ImportError:
        return 0
    try:
        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver means no GPU for this purpose
        return 0


def plan_workers(workers: int | None, threads: int, gpus: int, workers_per_gpu: int = 1) -> int:
    """Worker processes for a local pool: as asked, else ``workers_per_gpu`` per GPU, else one per ``threads`` cores."""
    if workers is not None:
        return int(workers)
    if gpus:
        return gpus * workers_per_gpu
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def gpu_for(index: int, gpus: int) -> str:
    """The GPU (as ``CUDA_VISIBLE_DEVICES``) of the ``index``-th worker started: round-robin over the devices."""
    return str(index % gpus)


@contextlib.contextmanager
def _sigint_ignored():
    """Workers are spawned on submit: started with SIGINT ignored, a Ctrl-C during their start-up
    cannot print a traceback from them (Python keeps an inherited SIG_IGN)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class WorkerError(ScalingError):
    """What a worker raised, as text: the exception itself could not travel back to the driver."""


def _portable(fn: Callable, *args):
    """Call ``fn`` in a worker; an exception that cannot be unpickled in the driver (e.g. one whose __init__
    takes other arguments than it stores, as some of transformers' config errors) would break the whole pool,
    so it comes back as a :class:`WorkerError` holding its type, message and traceback."""
    try:
        return fn(*args)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any failure to round-trip: send the text instead
            raise WorkerError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n"
                              f"{traceback.format_exc()[-3000:]}") from None
        raise


@register_executor
class LocalExecutor:
    """A pool of worker processes on this machine: one per core, or ``workers_per_gpu`` per GPU.

    Small models leave most of a GPU idle: several workers on one device (each its own process and CUDA context)
    train several runs at once. Workers are spread round-robin, so GPU ``i`` holds workers ``i, i + gpus, ...``.
    """

    name = "local"

    def __init__(self, workers: int | None = None, threads: int = 1, folder=None, workers_per_gpu: int = 1):
        if int(workers_per_gpu) < 1:
            raise ScalingError(f"workers_per_gpu must be at least 1, got {workers_per_gpu}")
        gpus = gpu_count()
        self.workers = plan_workers(workers, threads, gpus, int(workers_per_gpu))
        self.threads = threads
        self.gpus = gpus
        ctx = mp.get_context("spawn")
        self.pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                           initargs=(threads, gpus, ctx.Value("i", 0), os.getpid()))

    def submit(self, fn: Callable, *args) -> cf.Future:
        with _sigint_ignored():
            return self.pool.submit(_portable, fn, *args)

    def shutdown(self, kill: bool = False) -> None:
        """Wait for the running work (queued work is cancelled); ``kill``: stop the workers now."""
        if not kill:
            self.pool.shutdown(wait=True, cancel_futures=True)
            return
        procs = list((self.pool._processes or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # a killed run resumes from its last checkpoint: its files are written atomically
            if p.is_alive():
                p.terminate()
        deadline = time.time() + 5
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.time()))
            if p.is_alive():
                p.kill()
                p.join(timeout=1)


@register_executor
class SubmititExecutor:
    """Slurm job arrays through submitit; ``AutoExecutor`` falls back to local processes off a cluster."""

    name = "submitit"

    def __init__(self, workers: int | None = None, threads: int = 1, folder=None, workers_per_gpu: int = 1, **slurm):
        if int(workers_per_gpu) != 1:
            raise ScalingError("workers_per_gpu packs runs onto this machine's GPUs (the local executor); on Slurm each "
                               "run is a job of its own: set workers_per_gpu to 1 and ask for GPUs per job "
                               "(e.g. gpus_per_node) in the executor's Slurm parameters")
        try:
            import submitit
        except ImportError:
            raise ScalingError("the submitit executor needs submitit: pip install 'scaling[cluster]'") from None
        self.ex = submitit.AutoExecutor(folder=str(folder or "out/submitit"))
        params = {"timeout_min": 24 * 60, "cpus_per_task": threads}
        if workers:
            params["slurm_array_parallelism"] = workers
        params.update(slurm)
        self.ex.update_parameters(**params)
        self.threads = threads
        self.workers = workers or 1
        self.jobs: list = []

    def submit(self, fn: Callable, *args) -> cf.Future:
        job = self.ex.submit(fn, *args)
        self.jobs.append(job)
        fut: cf.Future = cf.Future()

        def wait():
            try:
                fut.set_result(job.result())
            except Exception as exc:  # noqa: BLE001 - the runner records whatever the job raised
                fut.set_exception(exc)

        threading.Thread(target=wait, daemon=True).start()
        return fut

    def shutdown(self, kill: bool = False) -> None:
        if kill:  # the driver is stopping: its jobs stop with it
            for job in self.jobs:
                try:
                    if not job.done():
                        job.cancel(check=False)
                except Exception:  # noqa: BLE001 - best effort; a job already gone is fine
                    pass
