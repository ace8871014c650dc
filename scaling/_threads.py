"""Keep BLAS/OpenMP thread pools small inside fits.

Fits here are thousands of tiny array operations; letting OpenBLAS spin up a
thread per core for each of them made small fits ~8x slower on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)
_active = threading.local()  # the limit this thread is already inside, if any


@contextlib.contextmanager
def limit_threads(n: int = 1) -> Iterator[None]:
    """Limit native thread pools (BLAS, OpenMP) to ``n`` threads in this block.

    Inside a block that already limits them to ``n`` or fewer this costs nothing (setting a limit reads the
    process's loaded libraries, about 2 ms: more than a small refit inside a bootstrap loop)."""
    outer = getattr(_active, "limit", None)
    if outer is not None and outer <= n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a hard dependency
        yield
        return
    with threadpool_limits(limits=n):
        _active.limit = n
        try:
            yield
        finally:
            _active.limit = outer


def single_threaded(func: F) -> F:
    """Decorator form of :func:`limit_threads` with one thread."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with limit_threads(1):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
