"""``limited_threads``: torch and the BLAS / OpenMP pools on a few threads inside a block, restored after.

The many small solves and fits of the probes run ~10-50x faster on one thread than on an
oversubscribed default pool on a busy machine; the process's own setting is back as it was when the
block ends (even on an error), so pe-hooks never changes it for the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def limited_threads(n: int | None = 1) -> Iterator[None]:
    """torch's intra-op threads and the BLAS / OpenMP pools (``threadpoolctl``) at most ``n`` inside
    the block, each restored afterwards; ``None`` leaves them alone."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
