"""Which queries run for which layers (streaming/pipeline/plan.py)."""

from __future__ import annotations

from streaming.pipeline.plan import plan_queries


def test_plan_runs_downstream_layers_inside_bronze():
    assert plan_queries(("bronze", "silver", "gold")) == {"bronze": ("silver", "gold")}
    assert plan_queries(("bronze", "silver")) == {"bronze": ("silver",)}
    assert plan_queries(("bronze",)) == {"bronze": ()}
    assert plan_queries(("silver", "gold")) == {"silver": ("gold",)}
    assert plan_queries(("gold",)) == {"gold": ()}
