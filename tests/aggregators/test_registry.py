"""One registry, clear errors for bad input, defined results for degenerate input, and the
``taskgroup aggregators`` command."""

from __future__ import annotations

import pytest
import torch

import taskgroup as tg
from taskgroup import aggregators
from taskgroup.cli import main
from tests.aggregators.conftest import random_gradients

GRADIENT = [n for n in aggregators.names() if aggregators.get(n).kind == "gradient"]
PLAIN = [n for n in GRADIENT if n != "transference"]  # transference needs the batch too
LOSS = ["uw", "dwa", "rlw", "famo"]


def test_names_and_kinds():
    assert aggregators.names() == [
        "mean",
        "mgda",
        "pcgrad",
        "cagrad",
        "imtl_g",
        "aligned_mtl",
        "graddrop",
        "nash_mtl",
        "fairgrad",
        "transference",
        *LOSS,
    ]
    assert tg.aggregators is aggregators
    for name in aggregators.names():
        agg = aggregators.get(name)
        expected = aggregators.LossWeighting if name in LOSS else aggregators.Aggregator
        assert isinstance(agg, expected) and agg.name == name
        assert aggregators.get(name) is not agg  # a fresh instance each time
    records = {r["name"]: r for r in aggregators.describe()}
    assert records["cagrad"]["options"]["c"] == 0.4
    assert records["nash_mtl"]["options"]["max_norm"] == 1.0
    # fairgrad passes **solver_options on to Nash-MTL, which defines them once
    assert records["fairgrad"]["options"] == {"alpha": 1.0, **records["nash_mtl"]["options"]}


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown aggregator 'nash'.*mean, mgda, pcgrad"):
        aggregators.get("nash")


def test_unknown_option_lists_the_methods_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'alpha' for aggregator 'cagrad'"):
        aggregators.get("cagrad", alpha=1.0)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cagrad", {"c": -0.1}, "c must be finite and >= 0"),
        ("cagrad", {"c": float("nan")}, "c must be finite"),
        ("cagrad", {"rescale": 3}, "rescale must be 0, 1 or 2"),
        ("fairgrad", {"alpha": 0.0}, "alpha must be finite and > 0"),
        ("nash_mtl", {"update_weights_every": 0}, "update_weights_every must be an integer >= 1"),
        ("nash_mtl", {"solver": "ecos"}, "solver must be one of newton, cvxpy"),
        ("nash_mtl", {"max_norm": -1.0}, "max_norm must be finite and >= 0"),
        ("pcgrad", {"reduction": "max"}, "reduction must be one of sum, mean"),
        ("aligned_mtl", {"scale": "max"}, "scale must be one of min, median, rmse"),
        ("graddrop", {"leak": 1.5}, r"leak must be in \[0, 1\]"),
        ("transference", {"candidates": ["nope"]}, "unknown aggregator 'nope'"),
        ("transference", {"candidates": ["uw"]}, "must be gradient aggregators"),
        ("transference", {"score": "best"}, "score must be one of total, relative"),
        ("dwa", {"temperature": 0.0}, "temperature must be finite and > 0"),
        ("dwa", {"window": 0}, "window must be an integer >= 1"),
        ("famo", {"w_lr": 0.0}, "w_lr must be finite and > 0"),
        ("uw", {"n_tasks": 0}, "n_tasks must be an integer >= 1"),
    ],
)
def test_options_out_of_range(name, options, message):
    with pytest.raises(ValueError, match=message):
        aggregators.get(name, **options)


@pytest.mark.parametrize("name", PLAIN)
def test_bad_gradient_matrices(name):
    agg = aggregators.get(name)
    with pytest.raises(ValueError, match=r"G must be a matrix \[k, d\].*got shape \(5,\)"):
        agg(torch.ones(5))
    with pytest.raises(ValueError, match="at least one task"):
        agg(torch.ones(0, 3))
    with pytest.raises(ValueError, match="floating-point"):
        agg(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        agg([[1.0, 2.0]])
    G = random_gradients(3, 4, 0)
    G[1, 2] = float("nan")
    G[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"not finite \(NaN or inf\) for task\(s\) 1, 2 \(row i"):
        agg(G)


def test_loss_weightings_reject_bad_losses():
    for name in LOSS:
        weighting = aggregators.get(name)
        with pytest.raises(ValueError, match="loss weighting: call it on the"):
            weighting(torch.ones(2, 3))
        with pytest.raises(ValueError, match="not finite"):
            weighting(torch.tensor([1.0, float("nan")]))
        with pytest.raises(ValueError, match=r"vector \[k\]"):
            weighting(torch.tensor(1.0))
    famo = aggregators.get("famo")
    with pytest.raises(ValueError, match="above its min_losses"):
        famo(torch.tensor([1.0, -1.0]))
    uw = aggregators.get("uw")
    uw(torch.ones(2))
    with pytest.raises(ValueError, match="set up for 2 tasks, got 3"):
        uw(torch.ones(3))


def test_weights_where_none_are_defined():
    with pytest.raises(ValueError, match="graddrop defines no task weights"):
        aggregators.get("graddrop").weights(random_gradients(2, 3, 0))
    with pytest.raises(ValueError, match="lookahead loss on the batch"):
        aggregators.get("transference")(random_gradients(2, 3, 0))


DEGENERATE = {
    "zero row": lambda g: torch.cat([g[:2], torch.zeros(1, g.shape[1], dtype=g.dtype)]),
    "identical rows": lambda g: torch.stack([g[0], g[0], g[1]]),
    "opposite rows": lambda g: torch.stack([g[0], -g[0], g[1]]),
    "rank deficient (k > d)": lambda g: g[:, :2],
    "k = 1": lambda g: g[:1],
    "all zero": lambda g: torch.zeros_like(g),
    "tiny float32": lambda g: (g * 1e-30).float(),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", PLAIN)
def test_degenerate_input_gives_finite_results(name, case):
    G = DEGENERATE[case](random_gradients(3, 6, 0))
    result = aggregators.get(name).aggregate(G)
    assert result.direction.shape == (G.shape[1],)
    assert bool(torch.isfinite(result.direction).all())
    if result.weights is not None:
        assert bool(torch.isfinite(result.weights).all())
        combined = (result.weights.double() @ G.double()).to(G.dtype)
        torch.testing.assert_close(result.direction, combined, rtol=1e-5, atol=1e-12)


def test_documented_degenerate_results():
    g = random_gradients(3, 6, 0)
    one = g[:1]
    for name in ("mean", "mgda", "pcgrad", "imtl_g", "aligned_mtl", "graddrop"):
        torch.testing.assert_close(aggregators.get(name)(one), one[0])  # k = 1: the gradient
    c = 0.4
    torch.testing.assert_close(aggregators.get("cagrad", c=c)(one), one[0] * (1 + c) / (1 + c**2))
    zero_row = DEGENERATE["zero row"](g)
    assert float(aggregators.get("mgda")(zero_row).abs().max()) == 0  # 0 is in the hull
    assert float(aggregators.get("imtl_g").weights(zero_row)[2]) == 0
    assert float(aggregators.get("nash_mtl").weights(zero_row)[2]) == 0
    identical = DEGENERATE["identical rows"](g)
    torch.testing.assert_close(aggregators.get("mgda")(identical), aggregators.get("mgda")(g[:2]))
    opposite = DEGENERATE["opposite rows"](g)
    assert aggregators.get("nash_mtl").aggregate(opposite).info["status"] == "pareto_stationary"
    cagrad = aggregators.get("cagrad", c=c).aggregate(opposite)  # stationary: the mean
    torch.testing.assert_close(cagrad.direction, opposite.mean(0) / (1 + c**2))
    for name in PLAIN:
        assert float(aggregators.get(name)(torch.zeros(3, 4)).abs().max()) == 0


def test_cli_lists_every_aggregator(capsys):
    assert main(["aggregators"]) == 0
    out = capsys.readouterr().out
    for name in aggregators.names():
        assert f"  {name} " in out
    assert "Gradient aggregators" in out and "Loss weightings" in out
    assert "c=0.4" in out and "Navon et al., ICML 2022" in out
