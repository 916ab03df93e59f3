"""The DISC-style copy benchmark: metrics by hand, queries, and a small end-to-end run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aigcguard.provenance.similarity import copyeval as C
from aigcguard.provenance.similarity.index import Reference, SimilarityIndex


def test_ranking_scores_by_hand():
    # Pooled ranking: right, wrong, right, wrong; three copying queries in all.
    preds = [(0.9, True), (0.8, False), (0.7, True), (0.1, False)]
    r = C.ranking_scores(preds, positives=3)
    # AP = (1/1 + 2/3) / 3
    assert r.muap == pytest.approx((1 + 2 / 3) / 3, abs=1e-4)
    assert r.recall_at_p90 == pytest.approx(1 / 3, abs=1e-4)
    assert C._score_at_precision(preds, 0.9) == 0.9
    assert C._score_at_precision(preds, 0.6) == 0.7
    assert C.ranking_scores([], 3).muap == 0.0


def test_queries_cover_every_edit_and_distractor(photos):
    refs = [("a", photos["astronaut"]), ("b", photos["coffee"])]
    distractors = [("d1", photos["brick"]), ("d2", photos["camera"])]
    queries = C.build_queries(refs, distractors, seed=1)
    assert len(queries) == 2 * len(C.EDITS) + 2
    assert {q.edit for q in queries if q.truth == "a"} == {e for e, _ in C.EDITS}
    assert [q.truth for q in queries[-2:]] == [None, None]
    for q in queries:
        assert q.image.dtype == np.uint8 and q.image.ndim == 3 and q.image.shape[2] == 3
    again = C.build_queries(refs, distractors, seed=1)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(queries, again, strict=True))
    assert len(C.build_queries(refs, [], seed=1)) == 2 * len(C.EDITS)
    with pytest.raises(ValueError, match="at least one reference"):
        C.build_queries([], distractors)


@pytest.mark.slow
def test_small_benchmark_end_to_end(photos, tmp_path):
    names = ["astronaut", "chelsea", "rocket"]
    refs = [(n, photos[n]) for n in names]
    distractors = [("brick", photos["brick"]), ("clock", photos["clock"])]
    with SimilarityIndex.create(tmp_path / "s", descriptor="vlad", device="cpu") as index:
        for n, arr in refs:
            Image.fromarray(arr).save(tmp_path / f"{n}.png")
        report = index.add([Reference(str(tmp_path / f"{n}.png"), title=n) for n in names])
        ids = {w.title: w.id for w in index.store.get(report.added)}
        result = C.evaluate(index, C.build_queries(refs, distractors), ids, k=3)
    assert result.queries == 3 * len(C.EDITS) + 2 and result.distractor_queries == 2
    assert result.verified.muap >= 0.8 and result.verified.accuracy_at_1 >= 0.8
    assert set(result.accuracy_by_edit) == {e for e, _ in C.EDITS}
    assert result.to_dict()["descriptor"]["muap"] == result.descriptor.muap
