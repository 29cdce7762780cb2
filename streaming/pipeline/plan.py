"""Which streaming queries run for the requested layers (the one-pass plan)."""

from __future__ import annotations

from collections.abc import Sequence

from streaming.core.names import LAYERS

__all__ = ["LAYER_ORDER", "plan_queries"]

LAYER_ORDER = LAYERS


def plan_queries(layers: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Which streaming queries run for the requested layers, and the layers each writes inside its batches.

    Bronze's query runs silver and gold inside its own micro-batches (one pass over each file from landing
    to prediction) whenever they are requested with it. Silver alone re-reads bronze as a Delta stream (e.g.
    after a bronze-only run); gold alone reads silver features as a Delta stream.
    """
    wanted = set(layers)
    if "bronze" in wanted:
        inline = ("silver", "gold") if "silver" in wanted and "gold" in wanted else (
            ("silver",) if "silver" in wanted else ())
        return {"bronze": inline}
    if "silver" in wanted:
        return {"silver": ("gold",) if "gold" in wanted else ()}
    return {"gold": ()} if "gold" in wanted else {}
