"""Invariants: the result does not depend on file order, and loading twice changes nothing."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segone.ingest import ingest_file
from segone.store.duckdb import DuckDBWarehouse

message = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "page", "identify", "bogus"]),
        "userId": st.one_of(st.none(), st.sampled_from(["u1", "u2", "u3"])),
        "anonymousId": st.one_of(st.none(), st.sampled_from(["a1", "a2"])),
        "event": st.one_of(st.none(), st.sampled_from(["Viewed", "Clicked"])),
        "timestamp": st.sampled_from(
            ["2024-01-01T00:00:00Z", "2024-02-01T10:00:00+02:00", "never"]
        ),
        "n": st.integers(0, 3),
    }
)


def _snapshot(wh: DuckDBWarehouse) -> tuple:
    ev = wh.execute(
        wh.table("events").select("message_id", "type", "user_id", "anonymous_id", "timestamp")
    )
    q = wh.execute(wh.table("quarantine").select("problems"))
    return (sorted(map(tuple, ev.astype(str).values.tolist())), sorted(q.problems))


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(msgs=st.lists(message, min_size=1, max_size=25), split=st.integers(0, 25), dup=st.booleans())
def test_events_order_independent_and_idempotent(msgs, split, dup):
    with tempfile.TemporaryDirectory() as d:
        rows = [{**m, "messageId": f"m{i}"} for i, m in enumerate(msgs)]
        if dup:  # the same message delivered in both files
            rows.append(rows[0])
        a, b = Path(d, "a.jsonl"), Path(d, "b.jsonl")
        a.write_text("\n".join(json.dumps(r) for r in rows[:split]) + "\n")
        b.write_text("\n".join(json.dumps(r) for r in rows[split:]) + "\n")
        results = []
        for order in ((a, b), (b, a)):
            with DuckDBWarehouse(":memory:") as wh:
                for p in order:
                    ingest_file(wh, "events", p)
                first = _snapshot(wh)
                for p in order:
                    ingest_file(wh, "events", p)
                assert _snapshot(wh) == first  # loading again changes nothing
                results.append(first)
        assert results[0] == results[1]
