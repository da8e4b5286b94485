"""Random streams differ per rank, worker and offset, and repeat under the same seed."""

from __future__ import annotations

import torch

from causal_engine.seeding import stream_generator, stream_seed


def test_same_seed_same_stream():
    a = torch.rand(5, generator=stream_generator(7, 1))
    b = torch.rand(5, generator=stream_generator(7, 1))
    assert torch.equal(a, b)


def test_offsets_and_ranks_give_different_streams(monkeypatch):
    seeds = {stream_seed(7), stream_seed(7, 0), stream_seed(7, 1), stream_seed(8)}
    monkeypatch.setenv("RANK", "1")
    seeds.add(stream_seed(7))
    assert len(seeds) == 5


def test_workers_get_different_streams():
    from torch.utils.data import DataLoader, IterableDataset

    class Draw(IterableDataset):
        def __iter__(self):
            yield torch.rand(3, generator=stream_generator(11))

    draws = list(DataLoader(Draw(), num_workers=2, batch_size=None))
    assert len(draws) == 2 and not torch.equal(draws[0], draws[1])
