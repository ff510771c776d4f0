"""Length-sorted batching, one implementation for the encoder and hf backends, the trainer and `bench efficiency`.

After lm-evaluation-harness's ``Collator`` (``lm_eval/models/utils.py``): sort the items by a key (here their
length, longest first, so each batch pads little), cut the sorted order into batches, and put per-item results
back in input order. Items are referred to by their index in the input; the sort is stable, so items of equal
length keep the order they were given in.

A batch holds at most ``max_rows`` items and, with a ``token_budget``, at most ``budget // padded length`` of
them (rows x padded length <= budget, the padded length being the batch's first, longest, item; always at least
one item). ``split(first, length)`` can end a batch early: the first later item for which it is true starts the
next batch. With a ``window`` the items are sorted only inside consecutive windows of that many items (in the
given order, e.g. a seeded shuffle) and no batch crosses a window boundary. A ``random.Random`` passed as
``shuffle`` shuffles the finished batches (a seeded order of whole batches).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: split(first item's length, a later item's length) -> True when that item must start a new batch
Split = Callable[[int, int], bool]


class Collator:
    """Item indices sorted longest first (stable), cut into batches; results restored to input order."""

    def __init__(self, lengths: Sequence[int], *, order: Sequence[int] | None = None,
                 window: int | None = None) -> None:
        """`lengths[i]` is item i's length; `order` the order the items are taken in (default: input order),
        sorted longest first inside consecutive windows of `window` items (default: all of them)."""
        self.lengths = list(lengths)
        given = list(range(len(self.lengths))) if order is None else list(order)
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1 (got {window})")
        self.window = window or max(len(given), 1)
        self.order: list[int] = [i for start in range(0, len(given), self.window)
                                 for i in sorted(given[start:start + self.window], key=lambda i: -self.lengths[i])]

    def __len__(self) -> int:
        return len(self.order)

    def batches(self, max_rows: int | None, *, token_budget: int | None = None, split: Split | None = None,
                start: int = 0, shuffle: random.Random | None = None) -> list[list[int]]:
        """Batches of item indices covering ``order[start:]`` (a restart after the first `start` sorted items,
        e.g. with a smaller batch after running out of memory). `max_rows` None: only the token budget caps."""
        if max_rows is None and token_budget is None:
            raise ValueError("batches need max_rows, a token_budget or both")
        out: list[list[int]] = []
        i = start
        while i < len(self.order):
            first = self.lengths[self.order[i]]
            if token_budget is None:
                n = max(1, max_rows or 1)
            else:
                fit = token_budget // max(first, 1)
                n = max(1, min(max_rows, fit) if max_rows is not None else fit)
            end = min(len(self.order), i + n, (i // self.window + 1) * self.window)
            if split is not None:
                end = next((k for k in range(i + 1, end) if split(first, self.lengths[self.order[k]])), end)
            out.append(self.order[i:end])
            i = end
        if shuffle is not None:
            shuffle.shuffle(out)
        return out

    def restore(self, done: Iterable[tuple[Sequence[int], Sequence[T]]]) -> list[T]:
        """Per-item results in input order, from (batch of indices, that batch's results) pairs."""
        results: dict[int, T] = {}
        for idx, values in done:
            if len(idx) != len(values):
                raise ValueError(f"a batch of {len(idx)} items returned {len(values)} results")
            results.update(zip(idx, values, strict=True))
        missing = len(self.lengths) - len(results)
        if missing:
            raise ValueError(f"{missing} item(s) without a result")
        return [results[i] for i in range(len(self.lengths))]
