"""bench.frontier's PRR-vs-threshold check on hand-made summary rows."""
from bench.frontier import family, target_check


def row(method, acc, nfe, se=0.01):
    return {"method": method, "accuracy": acc, "accuracy_stderr": se, "nfe_mean": nfe, "family": family(method)}


def test_target_check_reads_against_thresholds_frontier():
    rows = [row("fixed", 0.96, 38.0),
            row("threshold:tau=0.8", 0.945, 7.3), row("threshold:tau=0.9", 0.958, 7.9),
            row("threshold:tau=0.99", 0.958, 9.0),
            row("prr:shaping=temperature,tau=0.85", 0.95, 6.6), row("prr:tau=0.5", 0.90, 3.0)]
    chk = target_check(rows)
    assert chk["accuracy_floor"] == 0.97 * 0.96
    # prr tau 0.5 is below the floor and never counts
    assert all(d["prr"] != "prr:tau=0.5" for d in chk["frontier_match"])
    # the cheapest threshold reaching 0.95 is tau 0.9: 1 - 6.6 / 7.9
    best = chk["frontier_match"][0]
    assert best["threshold"] == "threshold:tau=0.9" and abs(best["nfe_reduction"] - (1 - 6.6 / 7.9)) < 1e-3
    assert chk["met_frontier_match"]
    # with one se of slack threshold tau 0.8 (0.945 >= 0.95 - 0.01) is enough: 1 - 6.6 / 7.3 < 15%
    assert chk["frontier_se"][0]["threshold"] == "threshold:tau=0.8" and not chk["met_frontier_se"]
    # the literal pairwise reading may pick the dominated tau 0.99 point
    assert chk["letter"]["threshold"] == "threshold:tau=0.99" and chk["met_letter"]


def test_family_names_other_controllers():
    assert family("prr:tau=0.9") == "prr (weighted)"
    assert family("prr:controller=a/b/ctl,shaping=temperature,tau=0.9") == "prr (temperature, ctl)"
    assert family("eb:gamma=0.1") == "eb"
