"""``--n_clusters`` with candidate Ks: the spellings it reads (Ks, ranges with and without a step), the
usage errors (one line, exit status 2), the lines of a candidate run, and a run end to end on digits that
prints the chosen K and resumes it."""

import json
import shlex

import pytest

from imc_cluster import IMCSwAVClustering
from imc_cluster.cli.output import epoch_line, k_scores_line
from imc_cluster.cli.parser import parse_args

#: a 2-epoch run of a tiny network with two candidate Ks on 200 digits
TINY = shlex.split(
    "--dataset digits --epochs 2 --batch_size 64 --backbone_width 4 --prototypes 10 --project_dim 8 "
    "--warmup 2 --limit_train 200 --limit_test 100 --quiet --dev cpu --n_heads 2"
)


def _n_clusters(*values: str):
    return parse_args(["train", "--dataset", "c10", "--n_clusters", *values]).n_clusters


@pytest.mark.parametrize(
    "values, expected",
    [
        (["10"], 10),
        (["5", "10", "20"], (5, 10, 20)),
        (["20", "5", "10"], (5, 10, 20)),
        (["5:20"], tuple(range(5, 21))),
        (["5:20:5"], (5, 10, 15, 20)),
        (["5:21:5"], (5, 10, 15, 20)),
        (["2:3"], (2, 3)),
        (["30", "5:7"], (5, 6, 7, 30)),
    ],
)
def test_one_k_or_candidates(values, expected):
    assert _n_clusters(*values) == expected


def test_without_the_flag_there_is_none():
    assert parse_args(["train", "--dataset", "c10"]).n_clusters is None


@pytest.mark.parametrize(
    "values, words",
    [
        (["20:5"], "the range '20:5' holds fewer than two Ks"),
        (["5:5"], "the range '5:5' holds fewer than two Ks"),
        (["5:20:0"], "positive STEP"),
        (["5:7:3"], "holds fewer than two Ks"),
        (["5:20:-5"], "holds fewer than two Ks"),
        (["five"], "'five' is not a number of clusters"),
        (["5:"], "'5:' is not a number of clusters"),
        (["1:2:3:4"], "is not a number of clusters"),
        (["2.5"], "is not a number of clusters"),
        (["5", "5"], "gives the K(s) [5] more than once"),
        (["4:6", "5"], "gives the K(s) [5] more than once"),
    ],
)
def test_bad_values_are_one_usage_line(run_cli, values, words):
    status, out, err = run_cli(["train", "--dataset", "c10", "--n_clusters", *values])
    assert status == 2 and out == ""
    assert err.startswith("imc-cluster: train: argument --n_clusters: ") and err.count("\n") == 1
    assert words in err


def test_the_lines_of_a_candidate_run():
    record = {
        "epoch": 3,
        "loss": 1.0,
        "swav": 2.0,
        "mi": -1.5,
        "reg": 0.5,
        "lr": 1e-3,
        "confidence": [0.5, 0.25],
        "agreement": [0.75, 1.0],
        "clusters_used": [2, 3],
        "acc": [0.5, 0.125],
        "nmi": [0.25, 0.5],
        "ari": [0.0, 1.0],
        "seconds": 2.0,
        "images_per_second": 100.0,
    }
    line = epoch_line(record, 10)
    assert "conf 0.500/0.250 agree 0.750/1.000 used 2/3" in line
    assert "test ACC 0.5000/0.1250 NMI 0.2500/0.5000 ARI 0.0000/1.0000" in line
    assert k_scores_line(3, {5: 0.25, 3: 0.75, 2: 0.5}) == (
        "n_clusters 3 (of 3 candidates, the best stability) | scores: 2 0.5000, 3 0.7500, 5 0.2500"
    )


def test_candidates_need_heads_naming_the_flags(run_cli, tmp_path):
    status, _, err = run_cli(
        ["train", *TINY, "--n_heads", "1", "--n_clusters", "4", "6", "--output_dir", tmp_path / "run"]
    )
    assert status == 2 and err.startswith("imc-cluster: ") and err.count("\n") == 1
    assert "--n_heads" in err and "--n_clusters" in err


def test_a_candidate_run_prints_the_choice_and_resumes_it(run_cli, tmp_path):
    out = tmp_path / "run"
    status, text, err = run_cli(["train", *TINY, "--n_clusters", "8:10", "--output_dir", out])
    assert status == 0, err
    est = IMCSwAVClustering.load(out / "model.cpt")
    assert est.n_clusters_ in (8, 9, 10) and sorted(est.k_scores_) == [8, 9, 10]
    assert k_scores_line(est.n_clusters_, est.k_scores_) in text
    assert "used " in text and "/" in text.split("used ")[1].split(" ")[0]  # one value per candidate
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history[-1]["mi_heads"]) == 3 and len(history[-1]["acc"]) == 3
    status, text, err = run_cli(
        ["train", *TINY, "--epochs", "3", "--output_dir", out, "--cpt_load_path", out / "model.cpt"]
    )
    assert status == 0, err
    resumed = IMCSwAVClustering.load(out / "model.cpt")
    assert "epoch 3/3" in text and resumed.n_iter_ == 3
    assert resumed.n_clusters_ == est.n_clusters_ and resumed.k_scores_ == est.k_scores_
