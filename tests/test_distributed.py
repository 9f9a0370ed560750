"""The sweep under torch.distributed (gloo, two CPU processes) equals one process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd
import torch.distributed as dist
import torch.multiprocessing as mp

from pe_hooks.probes import sweep
from tests.conftest import get_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from pe_hooks import load_model

        res = sweep(load_model("tiny-gpt2"), None, ["baseline", "zero"], n_seqs=24, folds=3, progress=False)
        if rank == 0:
            res.df.to_csv(out, index=False)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path: Path) -> None:
    out = tmp_path / "two.csv"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    two = pd.read_csv(out)
    one = sweep(get_model("tiny-gpt2"), None, ["baseline", "zero"], n_seqs=24, folds=3, progress=False).df
    merged = one.merge(two, on=["layer", "intervention", "metric"], suffixes=("_one", "_two"))
    assert len(merged) == len(one) == len(two)
    # equal up to float32 rounding of the per-batch X^T X products (batches differ between ranks)
    diff = (merged.value_one - merged.value_two).abs() - 1e-5 * merged.value_one.abs()
    assert float(diff.max()) < 1e-5, merged.loc[diff.idxmax()]
