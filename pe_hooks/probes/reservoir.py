"""A seeded, bounded sample of whole sequences from a stream of activations.

``Reservoir`` keeps a uniform random sample (Algorithm R, Vitter 1985) of at most ``max_seqs``
whole sequences from a stream of ``[batch, seq, d]`` activations (one or several layers, the same
sequences in each), with their positions and sequence ids. Memory is bounded by ``max_seqs``
whatever the number of tokens streamed; the same seed and stream give the same sample. The sweep's
classifier probes and the non-linear probes are fitted and scored on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np
import torch

from pe_hooks.core.errors import DataError

K = TypeVar("K", bound=Hashable)


class Reservoir(Generic[K]):
    """Seeded reservoir sample of at most ``max_seqs`` whole sequences, for one or more layers.

    ``add(acts, positions, seq_ids=None, mask=None)``: ``acts`` is ``[b, s, d]`` or a dict
    ``{layer: [b, s, d]}`` (any hashable keys; all layers see the same sampled sequences); ``positions`` ``[b, s]``;
    ``seq_ids`` ``[b]`` (default: a running count); ``mask`` ``[b, s]`` marks real tokens.
    Stored activations live on CPU in ``dtype`` (float32 by default; float16 halves the memory, and
    a sequence with values beyond float16's range is kept in float32); ``arrays`` returns float32. ``arrays(layer)`` returns ``(x, positions, seq_ids)``
    token arrays of the sample.
    """

    def __init__(self, max_seqs: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        if max_seqs < 1:
            raise DataError("max_seqs must be >= 1")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise DataError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        self.max_seqs = int(max_seqs)
        self.seed = seed
        self.dtype = dtype
        self._rng = np.random.default_rng(seed)
        self.n_seen = 0
        self._acts: list[dict[K, torch.Tensor]] = []
        self._pos: list[torch.Tensor] = []
        self._ids: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def layers(self) -> list[K]:
        return list(self._acts[0]) if self._acts else []

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored activations and positions."""
        total = sum(t.numel() * t.element_size() for a in self._acts for t in a.values())
        return total + sum(p.numel() * p.element_size() for p in self._pos)

    @property
    def n_tokens(self) -> int:
        return int(sum(p.numel() for p in self._pos))

    def add(
        self, acts: torch.Tensor | Mapping[K, torch.Tensor], positions: torch.Tensor,
        seq_ids: Sequence[int] | torch.Tensor | None = None, mask: torch.Tensor | None = None,
    ) -> None:
        layers: dict[K, torch.Tensor] = dict(acts) if isinstance(acts, Mapping) else {"x": acts}  # type: ignore[dict-item]
        if not layers:
            raise DataError("no activations to add")
        pos = torch.as_tensor(positions)
        b = int(pos.shape[0])
        for name, a in layers.items():
            if a.ndim != 3 or tuple(a.shape[:2]) != tuple(pos.shape):
                raise DataError(f"activations '{name}' must be [batch, seq, d] matching positions {tuple(pos.shape)}, "
                                f"got {tuple(a.shape)}")
        if self._acts and set(layers) != set(self._acts[0]):
            raise DataError(f"layers changed between batches: {list(layers)} vs {self.layers}")
        ids = list(range(self.n_seen, self.n_seen + b)) if seq_ids is None else [int(i) for i in seq_ids]
        if len(ids) != b:
            raise DataError(f"seq_ids must have one id per sequence ({b}), got {len(ids)}")
        keep = torch.ones_like(pos, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
        for i in range(b):
            slot = len(self._ids) if len(self._ids) < self.max_seqs else int(self._rng.integers(0, self.n_seen + 1))
            self.n_seen += 1
            if slot >= self.max_seqs:
                continue
            row = {n: self._store(a[i][keep[i]]) for n, a in layers.items()}
            p = pos[i][keep[i]].detach().to("cpu", torch.int64).clone()
            if slot == len(self._ids):
                self._acts.append(row)
                self._pos.append(p)
                self._ids.append(ids[i])
            else:
                self._acts[slot], self._pos[slot], self._ids[slot] = row, p, ids[i]

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        """Detached CPU copy in the storage dtype; values a half-precision type cannot hold stay float32."""
        t = t.detach().to("cpu", torch.float32)
        if self.dtype == torch.float32 or bool((t.abs() > 6e4).any()):
            return t.clone()
        return t.to(self.dtype)

    @property
    def seq_ids(self) -> list[int]:
        """Ids of the stored sequences, in sample order."""
        return list(self._ids)

    def positions_of(self, slot: int) -> torch.Tensor:
        """Positions of the stored tokens of the ``slot``-th sampled sequence."""
        return self._pos[slot]

    def row(self, slot: int) -> dict[K, torch.Tensor]:
        """``{layer: [tokens, d]}`` of the ``slot``-th sampled sequence, in the storage dtype."""
        return self._acts[slot]

    def arrays(self, layer: K | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x [n, d], positions [n], seq_ids [n])`` of every stored token (sample order)."""
        if not self._ids:
            raise DataError("the reservoir is empty: add() some batches first")
        name = layer if layer is not None else self.layers[0]
        if name not in self._acts[0]:
            raise KeyError(f"no layer '{name}' in the reservoir; have {self.layers}")
        x = torch.cat([a[name].float() for a in self._acts]).numpy()
        p = torch.cat(self._pos).numpy()
        g = np.concatenate([np.full(len(pp), i) for pp, i in zip(self._pos, self._ids, strict=True)])
        return x, p, g
