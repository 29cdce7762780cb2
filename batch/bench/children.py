"""The functions the bench runs in a child process of their own (a fresh Python with its own Spark session),
by name: ``processes.run_child`` starts ``python -m batch.bench FUNCTION JSON-ARGS``, which calls
``child_main``; it prints the result as one marked JSON line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from batch.bench.checkpoint import restart_child
from batch.bench.engines import commit_child
from batch.bench.processes import CHILD_RESULT_MARKER
from batch.bench.sink import sink_child

CHILD_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "sink_child": sink_child,
    "restart_child": restart_child,
    "commit_child": commit_child,
}


def child_main(argv: list[str]) -> int:
    """``python -m batch.bench FUNCTION JSON-ARGS``: run a part that needs its own Spark session."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = CHILD_FUNCTIONS[argv[0]](**json.loads(argv[1]))
    print(CHILD_RESULT_MARKER + json.dumps(result, default=str), flush=True)
    return 0
