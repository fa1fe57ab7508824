"""Run the items of a sweep on any ``concurrent.futures.Executor``, the results cache as the store.

The package's sweep drivers (:func:`convbias.sweep.run_sweep`,
:func:`convbias.intrinsic_dimension.run_noise_sweep`,
:func:`convbias.denoise.compressive_sensing_sweep`) take ``executor=``: ``None``
(the default) runs each item here, in order; a
``concurrent.futures.ProcessPoolExecutor`` runs them on this machine's cores; a
Dask ``distributed.Client(...).get_executor()`` runs them on a cluster. Each item
is computed through the results cache in the process that runs it, under the
driver's cache folder, so with a folder every worker can reach
(``CONVBIAS_RESULTS`` on a shared file system) an interrupted grid resumes from
whatever any worker finished. What an executor runs must be picklable: a process
pool needs ``make_model`` to be a module-level function or a
``functools.partial`` (Dask's cloudpickle also takes lambdas).

Threads share torch's global random generator, under which each item seeds and
initialises its members: two items running at once in one process would draw from
each other's stream and give results that differ from the serial run (and store
them). So items in one process run one at a time (:data:`ITEM_LOCK`): a
``ThreadPoolExecutor``, or a Dask worker with several threads, gives exactly the serial
result but no speed-up. Use processes to run items side by side. A process pool must
start its workers by ``spawn`` or ``forkserver``
(``ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn"))``): one that
forks (the default on Linux before Python 3.14) copies a process whose torch threads are
running, and its workers hang, so :func:`submit` refuses it in one line.

Used by chapters 1, 2 and 4 (their sweeps).
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable, Mapping

from .cache import ResultCache, resumable

#: held while an item runs: items in one process (threads of an executor) never overlap
ITEM_LOCK = threading.RLock()


def submit(
    executor: Executor | None,
    name: str | None,
    config: Mapping[str, Any],
    compute: Callable[[], Any],
) -> Future:
    """``compute()`` through the results cache under ``(name, config)`` (no cache if ``name`` is None).

    Without an executor it runs now, here (an error is raised at once, so a sweep stops at
    the item that failed), and the returned future is already done.
    """
    refuse_forking_pool(executor)
    store = ResultCache()
    if executor is None:
        done: Future = Future()
        done.set_result(_cached(name, config, compute, str(store.root), store.active))
        return done
    return executor.submit(
        _cached, name, dict(config), compute, str(store.root), store.active
    )


def _cached(
    name: str | None,
    config: Mapping[str, Any],
    compute: Callable[[], Any],
    root: str,
    active: bool,
) -> Any:
    """:func:`convbias.cache.resumable` in the process that runs the item, on the driver's store.

    Under :data:`ITEM_LOCK`: an item's random draws are its own even on a thread pool.
    """
    with ITEM_LOCK:
        return resumable(name, config, compute, store=ResultCache(root, active=active))


def refuse_forking_pool(executor: Executor | None) -> None:
    """Raise a one-line ``ValueError`` for a ``ProcessPoolExecutor`` that forks its workers.

    A forked worker inherits torch's thread pool in whatever state the parent left it and
    waits on threads that do not exist: the sweep hangs at 0 % CPU. ``spawn`` and
    ``forkserver`` start clean workers.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        return
    context = getattr(executor, "_mp_context", None) or multiprocessing.get_context()
    if context.get_start_method() == "fork":
        raise ValueError(
            "this ProcessPoolExecutor forks its workers, which hang once torch has started its "
            'threads: create it with mp_context=multiprocessing.get_context("spawn") (or "forkserver")'
        )
