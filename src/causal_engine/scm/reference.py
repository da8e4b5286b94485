"""The seed notebook's pandas ``SCMGenerator``, kept as the reference implementation the SCM benchmark compares
against.

A faithful copy of the data path the notebook's ``CausalDataset`` runs per graph (``generate_pipeline`` with
``as_torch=True`` plus the adjacency matrix): same numpy/pandas/networkx operations, with its print removed and
the unused triplet branch dropped. ``scripts/bench_scm.py`` times it against ``causal_engine.scm`` in the same run
(`compare_with_reference`); `sweep_point` is the prior's throughput and peak memory at the seed's configuration.
"""

from __future__ import annotations

import math
import time

import networkx as nx
import numpy as np
import pandas as pd
import torch

from causal_engine.profiling import reset_peak_rss, rss_mb
from causal_engine.scm import sample_batch

SEED_TYPES = (
    "linear",
    "negative linear",
    "sin",
    "cos",
    "tan",
    "log",
    "exp",
    "sqrt",
    "quadratic",
    "cubic",
)


class SeedSCMGenerator:
    def __init__(
        self,
        noise_scale: float = 1.0,
        intervention_values: list[float] | None = None,
    ):
        self.noise_scale = noise_scale
        self.intervention_values = [5.0, 8.0, 10.0] if intervention_values is None else list(intervention_values)

    def generate_dag(self, num_nodes: int, edge_prob: float) -> nx.DiGraph:
        dag = nx.DiGraph()
        dag.add_nodes_from(range(num_nodes))
        topo_order = np.arange(num_nodes)
        np.random.shuffle(topo_order)
        position_to_node = {i: topo_order[i] for i in range(num_nodes)}
        for i in range(num_nodes):
            for j in range(i + 1, num_nodes):
                if np.random.rand() < edge_prob:
                    dag.add_edge(position_to_node[i], position_to_node[j])
        return dag

    def edge_parameters(self, dag: nx.DiGraph) -> nx.DiGraph:
        for u, v in dag.edges():
            dag[u][v]["type"] = SEED_TYPES[np.random.randint(1, 11) - 1]
        return dag

    def generate_data(self, dag: nx.DiGraph, num_samples: int, intervention: dict | None = None) -> pd.DataFrame:
        nodes = list(dag.nodes())
        data = pd.DataFrame(
            np.random.normal(scale=self.noise_scale, size=(num_samples, len(nodes))),
            columns=nodes,
        )
        for node in nx.topological_sort(dag):
            if intervention is not None and node in intervention:
                data[node] = intervention[node]
                continue
            parents = list(dag.predecessors(node))
            if not parents:
                continue
            total_effect = data[node].values.copy()
            for parent in parents:
                func = dag[parent][node]["type"]
                p_data = data[parent].values
                term = 0
                if func == "linear":
                    term = 2.0 * p_data
                elif func == "negative linear":
                    term = -2.0 * p_data
                elif func == "sin":
                    term = np.sin(p_data)
                elif func == "cos":
                    term = np.cos(p_data)
                elif func == "tan":
                    term = np.tanh(p_data)
                elif func == "log":
                    term = np.log(np.abs(p_data) + 1e-5)
                elif func == "exp":
                    term = np.exp(np.clip(p_data, -5, 5))
                elif func == "sqrt":
                    term = np.sqrt(np.abs(p_data))
                elif func == "quadratic":
                    term = np.clip(p_data, -5, 5) ** 2
                elif func == "cubic":
                    term = np.clip(p_data, -3, 3) ** 3
                total_effect += term
            data[node] = np.clip(total_effect, -20, 20)
        return data

    def generate_interventional_dataset(
        self, base_df: pd.DataFrame, dag: nx.DiGraph, num_samples_per_intervention: int, intervention_prob: float
    ):
        nodes = list(dag.nodes())
        num_targets = int(np.ceil(len(nodes) * intervention_prob))
        targets = np.random.choice(nodes, size=num_targets, replace=False)
        all_dfs = [base_df]
        all_masks = [np.zeros_like(base_df.values)]
        for target_node in targets:
            for val in self.intervention_values:
                df_int = self.generate_data(
                    dag, num_samples=num_samples_per_intervention, intervention={target_node: val}
                )
                batch_mask = np.zeros((num_samples_per_intervention, len(nodes)))
                batch_mask[:, target_node] = 1.0
                all_dfs.append(df_int)
                all_masks.append(batch_mask)
        final_df = pd.concat(all_dfs, ignore_index=True)
        final_mask = np.vstack(all_masks)
        return final_df, final_mask, all_dfs, all_masks

    def generate_pipeline(
        self,
        num_nodes: int,
        edge_prob: float = 0.3,
        num_samples_base: int = 100,
        num_samples_per_intervention: int = 100,
        intervention_prob: float = 0.5,
    ) -> dict:
        """One graph with its data, as the notebook's ``CausalDataset`` requests it (``as_torch=True``)."""
        dag = self.edge_parameters(self.generate_dag(num_nodes, edge_prob))
        df_base = self.generate_data(dag, num_samples=num_samples_base)
        df_final, mask, all_dfs, all_masks = self.generate_interventional_dataset(
            df_base, dag, num_samples_per_intervention, intervention_prob
        )
        return {
            "dag": dag,
            "adj": torch.tensor(nx.to_numpy_array(dag), dtype=torch.float32),
            "all_dfs": all_dfs,
            "all_masks": all_masks,
            "base_tensor": torch.tensor(df_base.values, dtype=torch.float32),
            "final_tensor": torch.tensor(df_final.values, dtype=torch.float32),
            "mask_tensor": torch.tensor(mask, dtype=torch.float32),
        }


REFERENCE_CONFIG = {"num_obs": 100, "num_int_per_regime": 100, "intervention_fraction": 0.5, "num_queries": 1}
OURS = {"ours, edge_prob 0.3": {"edge_prob": 0.3}, "ours, 2 expected parents": {"expected_parents": 2.0}}
SWEEP_DS = (10, 20, 50, 100, 200)


def rows_per_graph(d: int) -> int:
    """Observational + interventional rows of one graph at the seed's configuration."""
    return 100 + 3 * math.ceil(d / 2) * 100


def time_ours(d: int, batch: int, generator: torch.Generator, **prior: float) -> float:
    """Seconds for one ``sample_batch`` call of ``batch`` graphs."""
    start = time.perf_counter()
    sample_batch(batch, d, generator=generator, **REFERENCE_CONFIG, **prior)
    return time.perf_counter() - start


def time_seed(d: int, graphs: int, generator: SeedSCMGenerator) -> float:
    """Seconds for ``graphs`` calls of the seed's per-graph pipeline."""
    start = time.perf_counter()
    for _ in range(graphs):
        generator.generate_pipeline(num_nodes=d, edge_prob=0.3, intervention_prob=0.5)
    return time.perf_counter() - start


def compare_with_reference(d: int, *, batch: int, repeats: int, seed_graphs: int) -> dict[str, tuple[float, float]]:
    """(best-round, all-rounds) graphs/s of the seed and of each of our settings at ``d``, ``repeats`` rounds.

    Rounds alternate between the implementations. On a shared machine a round can lose its core for a while;
    the best round (timeit's convention) measures the code, the all-rounds rate what the load left of it.
    """
    np.random.seed(0)
    reference_generator = SeedSCMGenerator()
    generator = torch.Generator().manual_seed(0)
    for prior in OURS.values():  # warm-up: first-call allocations and kernel dispatch
        time_ours(d, batch, generator, **prior)
    time_seed(d, 1, reference_generator)
    rounds: dict[str, list[float]] = {name: [] for name in ["seed (pandas)", *OURS]}
    for _ in range(repeats):
        rounds["seed (pandas)"].append(time_seed(d, seed_graphs, reference_generator) / seed_graphs)
        for name, prior in OURS.items():
            rounds[name].append(time_ours(d, batch, generator, **prior) / batch)
    return {name: (1 / min(per_graph), len(per_graph) / sum(per_graph)) for name, per_graph in rounds.items()}


def sweep_point(d: int, batch: int, min_seconds: float) -> dict[str, float]:
    """graphs/s and peak RSS of the default prior at the seed's sample configuration (run in a subprocess).

    Writing 5 to ``/proc/self/clear_refs`` resets the peak RSS to the current RSS, so the peak after the timed
    calls minus the RSS before them is what sampling at this d needs on top of the imported libraries.
    """
    generator = torch.Generator().manual_seed(0)
    sample_batch(2, 5, generator=generator)  # imports and dispatch warm, before the baseline
    baseline = reset_peak_rss()
    seconds: list[float] = []
    while len(seconds) < 3 or sum(seconds) < min_seconds:
        seconds.append(time_ours(d, batch, generator))
    peak = rss_mb("VmHWM")
    return {"graphs_per_s": batch / min(seconds), "peak_mb": peak - baseline, "baseline_mb": baseline}
