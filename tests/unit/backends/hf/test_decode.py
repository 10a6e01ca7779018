"""The decode loop's token pick: per-row top-p sets found by widening one row at a time draw exactly the
tokens a full sort of every row would (the same seed, the same token), so outputs do not depend on the
shortcut."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cai.backends.hf.decode import pick
from cai.core.records import SamplingParams


def full_sort_pick(logits: torch.Tensor, params: SamplingParams, seeds: list[int]) -> list[int]:
    """The reference: softmax, a full sort of every row, the top-p set scattered over the vocabulary, one
    ``multinomial`` per row with its own seeded generator."""
    probs = torch.softmax(logits / params.temperature, dim=-1)
    vals, ids = probs.sort(dim=-1, descending=True)
    before = vals.cumsum(-1) - vals
    kept = torch.zeros_like(probs).scatter(-1, ids, vals.masked_fill(before > params.top_p, 0.0))
    return [int(torch.multinomial(kept[j], 1, generator=torch.Generator().manual_seed(s)))
            for j, s in enumerate(seeds)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 8), top_p=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
       sharpness=st.floats(0.1, 12.0))
def test_pick_draws_what_a_full_sort_draws(seed, rows, top_p, sharpness):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, 3000, generator=gen) * torch.rand(rows, 1, generator=gen) * sharpness
    params = SamplingParams(temperature=1.0, top_p=top_p)
    seeds = list(range(seed % 1000, seed % 1000 + rows))
    got = pick(logits, params, [torch.Generator().manual_seed(s) for s in seeds]).tolist()
    assert got == full_sort_pick(logits, params, seeds)


@pytest.mark.parametrize("flat_rows", [0, 1, 3])
def test_a_flat_row_widens_alone(flat_rows):
    logits = torch.zeros(4, 2000)
    logits[flat_rows:, :5] = 20.0  # peaked rows: their top-p set is within the first 64
    params = SamplingParams(temperature=1.0, top_p=0.9)
    got = pick(logits, params, [torch.Generator().manual_seed(s) for s in range(4)]).tolist()
    assert got == full_sort_pick(logits, params, list(range(4)))
    assert all(t < 5 for t in got[flat_rows:])
