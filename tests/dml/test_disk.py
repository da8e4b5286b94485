"""Videos on disk: rows read on demand equal the array, the contract's checks stream, both layouts agree."""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from causal_engine.dml.crossfit import run_crossfit
from causal_engine.dml.data import CHECK_ROWS, CausalSample, check_sample, load_sample
from causal_engine.dml.disk import NpyVideos, NpyWriter, VideoFolder, open_videos
from causal_engine.dml.fold import embed_rows
from causal_engine.dml.simulate import write_simulated_videos
from causal_engine.dml.video_cost import measure_video_fold
from causal_engine.errors import UserError
from causal_engine.jepa.module import JEPAModule

from .test_crossfit import TINY_MODEL


def _files_overrides(videos, table) -> list[str]:
    return [
        *TINY_MODEL,
        "data=video_files",
        f"data.videos={videos}",
        f"data.table={table}",
        "data.treatment=treatment",
        "data.outcome=outcome",
    ]


def test_disk_videos_read_exactly_the_rows_asked_for(tmp_path):
    array = np.random.default_rng(0).normal(size=(9, 2, 3, 4, 5))  # float64 on disk, float32 when read
    np.save(tmp_path / "v.npy", array)
    videos = open_videos(tmp_path / "v.npy")
    expected = torch.from_numpy(array.astype(np.float32))
    assert isinstance(videos, NpyVideos) and videos.shape == array.shape and videos.dim() == 5
    assert torch.equal(videos[4], expected[4]) and torch.equal(videos[-1], expected[-1])
    assert torch.equal(videos[2:7], expected[2:7])
    rows = torch.tensor([8, 0, 1, 2, 5, 4])  # unsorted, with a run: several reads
    assert torch.equal(videos[rows], expected[rows]) and videos[rows].dtype == torch.float32
    with pytest.raises(IndexError):
        videos[9]


def test_streamed_videos_give_the_same_sample_and_estimate_as_in_memory(compose, tmp_path):
    videos, table = write_simulated_videos(tmp_path, 90, (1, 4, 8, 8), chunk_size=40, seed=3)
    cfg = compose(_files_overrides(videos, table))
    streamed = load_sample(cfg.data)
    assert isinstance(streamed.features, NpyVideos)  # nothing loaded into memory
    in_memory = replace(streamed, features=torch.from_numpy(np.load(videos)))
    assert torch.equal(streamed.features[torch.arange(90)], in_memory.features)
    a, b = run_crossfit(cfg), run_crossfit(cfg, in_memory)
    assert a.result.estimate == b.result.estimate and a.result.se == b.result.se
    for key in ("g0", "g1", "m"):
        np.testing.assert_array_equal(a.predictions[0][key], b.predictions[0][key])


def test_nan_in_a_late_chunk_is_reported_with_its_row(tmp_path):
    n = 2 * CHECK_ROWS + 10
    array = np.zeros((n, 1, 2, 4, 4), dtype=np.float32)
    array[n - 3, 0, 1, 2, 3] = np.inf
    np.save(tmp_path / "v.npy", array)
    sample = CausalSample(open_videos(tmp_path / "v.npy"), np.arange(n) % 2.0, np.zeros(n))
    with pytest.raises(UserError, match=rf"NaN/inf \(first at row {n - 3}\)"):
        check_sample(sample)


def test_folder_layout_reads_the_same_videos_as_one_file(compose, tmp_path):
    npy, table = write_simulated_videos(tmp_path / "npy", 30, (1, 4, 8, 8), chunk_size=16, seed=5)
    folder, folder_table = write_simulated_videos(
        tmp_path / "folder", 30, (1, 4, 8, 8), layout="folder", chunk_size=16, seed=5
    )
    assert folder_table.read_text() == table.read_text()
    sample = load_sample(compose(_files_overrides(folder, folder_table)).data)
    assert isinstance(sample.features, VideoFolder) and sample.features.shape == (30, 1, 4, 8, 8)
    rows = torch.tensor([29, 3, 4, 17])
    assert torch.equal(sample.features[rows], open_videos(npy)[rows])
    np.save(folder / "000017.npy", np.zeros((1, 4, 8, 9), dtype=np.float32))
    with pytest.raises(UserError, match=r"000017.npy \(row 17\) has shape \(1, 4, 8, 9\)"):
        sample.features[rows]


def test_npy_writer_refuses_an_incomplete_array(tmp_path):
    writer = NpyWriter(tmp_path / "v.npy", (4, 2))
    writer.write(np.ones((3, 2)))
    with pytest.raises(ValueError, match="3 of 4 rows written"):
        writer.close()


def test_embed_rows_equals_embedding_the_rows_at_once(tmp_path):
    array = np.random.default_rng(1).normal(size=(11, 1, 4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", array)
    jepa = JEPAModule(optimizer=partial(torch.optim.AdamW), rep_dim=8, depth=1, heads=2, pred_dim=4, pred_depth=1)
    rows = np.array([10, 3, 4, 5, 0, 7, 1])  # unsorted, batches of 3 leave a remainder
    expected = jepa.embed(torch.from_numpy(array[rows]))
    np.testing.assert_allclose(embed_rows(jepa, open_videos(tmp_path / "v.npy"), rows, 3), expected, rtol=1e-6)


def test_video_cost_runs_a_cut_fold_and_scales_the_jepa_epoch(compose, tmp_path):
    videos, table = write_simulated_videos(tmp_path, 80, (1, 4, 8, 8), seed=2)
    cfg = compose([*_files_overrides(videos, table), "dml.jepa_batch_size=8"])
    out = measure_video_fold(cfg, train_batches=2)
    # K = 3 leaves 53 training rows, 48 after the inner split: 6 batches of 8, 2 run, the epoch scaled by 3.
    assert (out["jepa_batches_run"], out["jepa_batches_per_epoch"], out["tokens_per_clip"]) == (2, 6, 2 * 4 * 4)
    assert out["jepa_epoch_cpu_s"] == pytest.approx(3 * out["steps"]["jepa_cut_epoch"]["cpu_s"])
    assert out["peak_rss_mb"] == max(step["peak_rss_mb"] for step in out["steps"].values())
