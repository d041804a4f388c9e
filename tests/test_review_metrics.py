"""Agreement metrics on hand-computed examples, and the `review status` numbers they feed."""

from __future__ import annotations

import pytest
from conftest import Cli
from review_fixtures import review_workspace

from imdd_build.catalog import Catalog
from imdd_build.review.auth import add_reviewer
from imdd_build.review.metrics import (
    cohen_kappa,
    edit_distance,
    normalized_edit_distance,
    percent_agreement,
)
from imdd_build.review.queue import ReviewQueue

# Ten items, two raters. They agree on 8 -> p_o = 0.8. A: 7 accept / 3 reject, B: 7 / 3
# -> p_e = 0.7 * 0.7 + 0.3 * 0.3 = 0.58 -> kappa = (0.8 - 0.58) / (1 - 0.58) = 0.22 / 0.42 = 0.523810...
A = ["accept", "accept", "reject", "accept", "reject", "accept", "accept", "reject", "accept", "accept"]
B = ["accept", "reject", "reject", "accept", "reject", "accept", "accept", "accept", "accept", "accept"]


def test_kappa_and_agreement_by_hand():
    assert percent_agreement(A, B) == pytest.approx(0.8)
    assert cohen_kappa(A, B) == pytest.approx(0.22 / 0.42)
    assert cohen_kappa(A, A) == pytest.approx(1.0)
    assert cohen_kappa(["accept"] * 4, ["accept"] * 4) == 1.0  # no variation, full agreement
    # perfect disagreement on a balanced set: p_o 0, p_e 0.5 -> -1
    assert cohen_kappa(["accept", "reject"], ["reject", "accept"]) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None and percent_agreement([], []) is None


def test_edit_distance_by_hand():
    assert edit_distance(["kitten"], ["sitting"]) == 1
    assert edit_distance(list("kitten"), list("sitting")) == 3
    # 1 substitution + 1 deletion over the longer caption's 6 words
    assert normalized_edit_distance("a small scratch in the center", "a large scratch in center") == pytest.approx(2 / 6)
    assert normalized_edit_distance("same words", "same   words") == 0.0
    assert normalized_edit_distance("", "") == 0.0 and normalized_edit_distance("x y", "") == 1.0


def test_status_reports_the_hand_computed_agreement_gold_and_throughput(tmp_path):
    ws = review_workspace(tmp_path)
    with Catalog(ws / "catalog.sqlite") as catalog:
        q = ReviewQueue(catalog)
        q.enqueue(sample_rate=0, double_rate=1.0)
        ra, rb = add_reviewer(q.db, "ra")[0], add_reviewer(q.db, "rb")[0]
        keys = []
        for i, (da, db_) in enumerate(zip(A, B)):
            x = q.next_item(ra)
            keys.append(x["key"])
            if da == "accept" and i == 0:  # an edit counts as accept; same text as rb's below
                q.submit(ra, x["key"], "edit", x["version"], caption="Edited text one two three four", time_spent=10)
            elif da == "accept":
                q.submit(ra, x["key"], "accept", x["version"], time_spent=10)
            else:
                q.submit(ra, x["key"], "reject", x["version"], reason="bad_image", time_spent=10)
            y = q.next_item(rb)
            assert y["key"] == x["key"]
            if db_ == "accept" and i == 0:
                q.submit(rb, y["key"], "edit", y["version"], caption="Edited text one two three five", time_spent=20)
            elif db_ == "accept":
                q.submit(rb, y["key"], "accept", y["version"], time_spent=20)
            else:
                q.submit(rb, y["key"], "reject", y["version"], reason="bad_image", time_spent=20)
        # gold answers can be configured at any time (enqueue again is idempotent)
        q.enqueue(sample_rate=0, double_rate=1.0, gold={keys[0]: "accept", keys[1]: "accept", keys[2]: "reject",
                                                         "demo/not/there": "accept"})
    status = Cli(ws)("review", "status")
    ag = status["agreement"]
    assert ag["pairs"] == 10 and ag["percent_agreement"] == pytest.approx(0.8)
    assert ag["cohen_kappa"] == pytest.approx(0.22 / 0.42, abs=1e-4)
    # both kept a caption on 6 items: 5 identical drafts, one edit pair 1 word apart out of 6
    assert ag["caption_pairs"] == 6 and ag["mean_normalized_edit_distance"] == pytest.approx((1 / 6) / 6, abs=1e-4)
    assert ag["disputed"] == 3  # two category disagreements + the differing edits
    tp = status["throughput"]
    assert tp["ra"]["decisions"] == 10 and tp["ra"]["median_seconds"] == 10
    assert tp["ra"]["items_per_active_hour"] == pytest.approx(360.0)
    assert tp["rb"]["items_per_active_hour"] == pytest.approx(180.0)
    gold = status["gold"]
    assert gold["configured"] == 3 and gold["answered"] == 6 and gold["correct"] == 5
    assert gold["by_reviewer"]["ra"] == {"answered": 3, "correct": 3, "accuracy": 1.0}
    assert gold["by_reviewer"]["rb"] == {"answered": 3, "correct": 2, "accuracy": pytest.approx(0.6667)}
    cov = status["coverage"]["by_source"]["demo"]
    assert cov["queued"] == 42 and cov["reviewed"] == 7 and cov["coverage"] == pytest.approx(7 / 42, abs=1e-4)
