"""The one place that sets numba options for every kernel.

``cache=True`` writes compiled code beside the module, so a process pays the compile once per
machine, not once per start. ``nogil=True`` lets callers run kernels on worker threads (the
server's drift monitor and ``sluice drift`` both do). No ``fastmath``: it would let LLVM assume
NaN never occurs, and the kernels count NaNs. Decorators carry no signatures, so nothing
compiles at import; each kernel compiles for the float64/int64 arrays it is first called with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def jit(*, parallel: bool = False) -> Callable[[F], F]:
    """Return numba's ``njit`` with the project's settings; ``parallel`` enables ``prange``."""
    decorator = numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy")
    return cast(Callable[[F], F], decorator)
