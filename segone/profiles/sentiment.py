"""Sentiment of free text (posts, reviews, tickets) with VADER, a lexicon made for social media.

VADER (Hutto & Gilbert, 2014) ships its lexicon inside the package: nothing is downloaded.
Scores are computed once per interaction and kept in ``interaction_sentiment``.
"""

from __future__ import annotations

import pyarrow as pa
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from segone.store.base import Warehouse

_analyzer: SentimentIntensityAnalyzer | None = None


def score_texts(texts: list[str | None]) -> list[float | None]:
    """VADER compound score in [-1, 1] per text (None for no text)."""
    global _analyzer
    if _analyzer is None:
        _analyzer = SentimentIntensityAnalyzer()
    return [None if not t else float(_analyzer.polarity_scores(t)["compound"]) for t in texts]


def score_interactions(wh: Warehouse) -> None:
    """Score every interaction not scored yet (texts are immutable once loaded)."""
    it = wh.table("interactions")
    done = wh.table("interaction_sentiment")
    todo = (
        it.filter(it.text.notnull())
        .select("interaction_id", "text")
        .anti_join(done, "interaction_id")
    )
    arrow = wh.to_arrow(todo)
    if arrow.num_rows == 0:
        return
    scores = score_texts(arrow.column("text").to_pylist())
    table = pa.table(
        {
            "interaction_id": arrow.column("interaction_id"),
            "sentiment": pa.array(scores, pa.float64()),
        }
    )
    wh.insert("interaction_sentiment", wh.stage("_segone_sent", table, append=False))
    wh.drop_staging("_segone_sent")
