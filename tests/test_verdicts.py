"""The verdict rules on the article's claims, on hand-made intervals."""

from genrec_jax.eval.verdicts import claim_verdicts, verdict_markdown


def iv(d, lo, hi):
    return {"mean_diff": d, "ci_low": lo, "ci_high": hi}


def judge(mean, std=0.1, n=3):
    return {"judge_score": {"mean": mean, "std": std, "n": n}}


def make(asft_vs=None, truth_vs_bc=None):
    """A table of rows and paired intervals: every other row below A-SFT on the ranking metrics
    unless ``asft_vs`` says otherwise; ``truth_vs_bc[row]``: that row's truth interval to BC."""
    rows = ["pretrained", "bc", "asft", "ppo", "dpo", "ipo", "cql"]
    table = {r: judge(10.0) for r in rows}
    for r in ("ppo", "dpo", "ipo"):
        table[r] = judge(12.0)
    paired = {r: {} for r in rows}
    for r in rows:
        for m in ("ndcg@10", "hr@10", "mrr"):
            paired[r][m] = {"asft": (asft_vs or {}).get(r, iv(-0.02, -0.03, -0.01))}
        truth = (truth_vs_bc or {}).get(r, iv(-0.5, -0.7, -0.3))
        paired[r]["true_value"] = {"bc": truth, "asft": iv(-0.4, -0.6, -0.2)}
    return table, paired


def test_asft_best_holds_fails_or_is_inconclusive():
    table, paired = make(truth_vs_bc={"cql": iv(0.0, -0.1, 0.1)})
    out = claim_verdicts(table, paired, simulator=True)
    assert out[0]["verdict"] == "holds"
    table, paired = make(asft_vs={"bc": iv(0.01, 0.002, 0.02)})
    out = claim_verdicts(table, paired, simulator=True)
    assert out[0]["verdict"] == "does not hold" and "bc (ndcg@10)" in out[0]["evidence"][0]
    table, paired = make(asft_vs={"bc": iv(0.0, -0.01, 0.01)})
    assert claim_verdicts(table, paired, simulator=True)[0]["verdict"] == "inconclusive"


def test_overfit_claim_needs_a_clear_judge_gap_and_a_lower_truth():
    table, paired = make()
    assert claim_verdicts(table, paired, simulator=True)[1]["verdict"] == "holds"
    # One of them above BC on the truth: the claim fails.
    table, paired = make(truth_vs_bc={"dpo": iv(0.2, 0.1, 0.3)})
    assert claim_verdicts(table, paired, simulator=True)[1]["verdict"] == "does not hold"
    # One seed: no standard error of the judge gap, so never a clear "high judge score".
    table, paired = make()
    for r in table:
        table[r]["judge_score"].update(std=0.0, n=1)
    assert claim_verdicts(table, paired, simulator=True)[1]["verdict"] == "inconclusive"


def test_cql_claim():
    table, paired = make()
    # Level with BC, below A-SFT: robust, under-uses the reward.
    paired["cql"]["true_value"] = {"bc": iv(0.0, -0.1, 0.1), "asft": iv(-0.3, -0.5, -0.1)}
    paired["cql"]["ndcg@10"]["bc"] = iv(0.0, -0.1, 0.1)
    assert claim_verdicts(table, paired, simulator=True)[2]["verdict"] == "holds"
    paired["cql"]["true_value"]["bc"] = iv(-0.3, -0.5, -0.1)  # below BC: not robust
    assert claim_verdicts(table, paired, simulator=True)[2]["verdict"] == "does not hold"
    # Real data: the truth metric is NDCG@10 and there is no landscape claim.
    out = claim_verdicts(table, paired, simulator=False)
    assert len(out) == 3 and out[2]["evidence"][0].startswith("cql − bc ndcg@10")


def _region(best, clear):
    return {"best": best, "runner_up": "x", "margin": 0.1, "se": 0.01, "clear": clear}


def test_landscape_claim_reads_the_winner_regions_along_the_rm_error():
    table, paired = make()
    # Listed in noise order; the x-axis (RM error) sorts them: 0.2, 0.5, 0.9.
    land = {"noise": [0.5, 0.1, 1.5], "rm_rmse": [0.5, 0.2, 0.9],
            "regions": [_region("asft", True), _region("ppo", True), _region("bc", True)]}
    assert claim_verdicts(table, paired, simulator=True, landscape=land)[3]["verdict"] == "holds"
    land["regions"][2] = _region("ppo", True)  # PPO wins clearly where the RM is worst
    assert claim_verdicts(table, paired, simulator=True,
                          landscape=land)[3]["verdict"] == "does not hold"
    land["regions"] = [_region("asft", False)] * 3
    out = claim_verdicts(table, paired, simulator=True, landscape=land)[3]
    assert out["verdict"] == "inconclusive" and len(out["evidence"]) == 3
    lines = verdict_markdown([out])
    assert lines[0] == "## The article's claims" and "**inconclusive**" in lines[4]


def test_judge_gaps_are_paired_by_seed():
    import math

    from genrec_jax.eval.comparison import seed_paired_gaps

    # The worlds shift every row's judge score; the pairing removes it.
    per_seed = [{"bc": {"judge_score": 10.0}, "ppo": {"judge_score": 10.5}},
                {"bc": {"judge_score": 12.0}, "ppo": {"judge_score": 12.7}},
                {"bc": {"judge_score": 11.0}, "ppo": {"judge_score": 11.6}}]
    gaps = seed_paired_gaps(per_seed, ["bc", "ppo"], "judge_score", "bc")
    assert abs(gaps["ppo"]["mean_diff"] - 0.6) < 1e-12
    assert abs(gaps["ppo"]["se"] - 0.1 / math.sqrt(3)) < 1e-12 and gaps["ppo"]["n"] == 3
    assert gaps["bc"]["mean_diff"] == 0.0
    table, paired = make()
    for r in table:  # unpaired, the seeds' spread (std 2.0) hides the gap of 2.0
        table[r]["judge_score"].update(std=2.0, n=3)
    assert claim_verdicts(table, paired, simulator=True)[1]["verdict"] == "inconclusive"
    clear = {r: {"mean_diff": 2.0, "se": 0.1, "n": 3} for r in ("ppo", "dpo", "ipo")}
    assert claim_verdicts(table, paired, simulator=True,
                          judge_gaps=clear)[1]["verdict"] == "holds"
