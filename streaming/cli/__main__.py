"""``python -m streaming.cli``: the ``xray`` command without the console script."""

import sys

from streaming.cli.commands import main

sys.exit(main())
