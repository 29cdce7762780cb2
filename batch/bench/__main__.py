"""``python -m batch.bench FUNCTION JSON-ARGS``: the entry of the bench's child processes."""

import sys

from batch.bench.children import child_main

if __name__ == "__main__":  # pragma: no cover - used by run_bench's child processes
    sys.exit(child_main(sys.argv[1:]))
