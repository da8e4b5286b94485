"""A checkpoint is data: weights load, a pickle that would run code is refused before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from causal_engine.discovery.checkpoint import CheckpointError, export_pfn, load_pfn, warn_outside_training
from causal_engine.discovery.encoder import NUM_PAIR_FEATURES
from causal_engine.discovery.models import PAIR_INPUTS, ModelD
from causal_engine.discovery.module import PFNModule

from .conftest import small_batch
from .test_discover import chain_table, overrides

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "pfn.pt"


class CreatesAFile:
    """Unpickling this object calls open(path, "w"): the file appearing means the pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def tiny_net() -> ModelD:
    torch.manual_seed(0)
    return ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=6)


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    """(a .pt whose unpickling would create `marker`, marker); the net_spec/state_dict keys look genuine."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    net = tiny_net()
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict(), "meta": CreatesAFile(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(malicious) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError) as caught:
        load_pfn(path)
    message = str(caught.value)
    assert message == (
        f"task.checkpoint: {path} is not a weights-only checkpoint (unpickling it would run code), so it is not "
        f"loaded; export the weights with causal_engine.discovery.checkpoint.export_pfn."
    )
    assert "\n" not in message
    assert not marker.exists()


def test_task_discover_refuses_the_malicious_checkpoint(run_experiment, tmp_path: Path, malicious) -> None:
    path, marker = malicious
    data = tmp_path / "data.csv"
    chain_table().to_csv(data, index=False)
    with pytest.raises(CheckpointError, match=r"task\.checkpoint: .*evil\.pt is not a weights-only checkpoint"):
        run_experiment(overrides(data, path))
    assert not marker.exists()


def test_init_checkpoint_goes_through_the_same_refusal(malicious) -> None:
    path, marker = malicious
    with pytest.raises(CheckpointError, match=r"^model\.init_checkpoint: .*evil\.pt is not a weights-only"):
        PFNModule(tiny_net(), optimizer=torch.optim.Adam, init_checkpoint=str(path))
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a torch checkpoint \(torch.save writes a zip"):
        load_pfn(path)


def test_export_of_a_lightning_checkpoint_loads_back_the_same_weights(tmp_path: Path) -> None:
    net = tiny_net()
    lightning = tmp_path / "best-000-000007.ckpt"
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "net_spec": net.net_spec(), "global_step": 7}, lightning)
    meta = export_pfn(lightning, tmp_path / "out" / "pfn.pt", {"model": "pfn_d"})
    assert meta == {"model": "pfn_d", "steps": 7, "source": "best-000-000007.ckpt"}
    loaded = load_pfn(tmp_path / "out" / "pfn.pt")
    assert not loaded.training
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_the_shipped_checkpoint_is_weights_only() -> None:
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"net_spec", "state_dict", "meta"}
    assert load_pfn(SHIPPED).max_nodes == ckpt["net_spec"]["kwargs"]["max_nodes"]


def test_a_net_loaded_for_fine_tuning_trains_with_its_dropout_on(tmp_path: Path) -> None:
    net = ModelD(d_model=16, n_heads=2, n_layers=1, n_delta_layers=1, max_nodes=6, dropout=0.1)
    path = tmp_path / "pfn.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": net.state_dict()}, path)
    assert not load_pfn(path).training  # for inference
    module = PFNModule(tiny_net(), optimizer=torch.optim.Adam, init_checkpoint=str(path))
    assert all(m.training for m in module.modules())


def test_tables_outside_the_trained_graph_sizes_warn(tmp_path, caplog):
    # The shipped checkpoint records the sizes its recipe trained on; a 3-variable table is below them.
    assert not warn_outside_training(SHIPPED, 20)
    with caplog.at_level("WARNING"):
        assert warn_outside_training(SHIPPED, 3, key="task.discovery.checkpoint")
    assert "trained on graphs of 5-100 variables" in caplog.text and "task.discovery.checkpoint" in caplog.text
    # A checkpoint without a record (no json, or none of the key) warns about nothing.
    bare = tmp_path / "bare.pt"
    assert not warn_outside_training(bare, 3)
    bare.with_suffix(".json").write_text('{"steps": 1}')
    assert not warn_outside_training(bare, 3)


def test_a_checkpoint_of_an_older_pair_feature_list_loads_and_predicts_as_trained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint trained on the first 12 pair features (today's list extends it) loads with zero weights for
    the rest: its edges and deltas are those of a net that ignores the new features."""
    net = tiny_net().eval()
    new = NUM_PAIR_FEATURES - 12
    old = {k: v[:, :-new] if k in PAIR_INPUTS else v for k, v in net.state_dict().items()}
    path = tmp_path / "old.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": old, "meta": {}}, path)
    with caplog.at_level("WARNING"):
        loaded = load_pfn(path)
    assert f"trained on the first 12 of today's {NUM_PAIR_FEATURES} pair features" in caplog.text
    with torch.no_grad():
        for key in PAIR_INPUTS:
            if key in dict(net.named_parameters()):
                net.get_parameter(key)[:, -new:] = 0
        batch = small_batch(sizes=(6,), graphs=2)
        expected, got = net(batch), loaded(batch)
    torch.testing.assert_close(got.edge_logits, expected.edge_logits)
    torch.testing.assert_close(got.delta, expected.delta)


def test_a_checkpoint_of_another_shape_is_still_refused(tmp_path: Path) -> None:
    net = tiny_net()
    state = net.state_dict()
    state["edge_mlp.0.weight"] = state["edge_mlp.0.weight"][:-1]  # rows, not feature columns
    path = tmp_path / "odd.pt"
    torch.save({"net_spec": net.net_spec(), "state_dict": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match=f"task.checkpoint: {path} does not fit its own net_spec"):
        load_pfn(path)
