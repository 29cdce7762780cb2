"""The `xray` command as a file spark-submit can run (it needs a .py file, not a console script).

    spark-submit --master spark://HOST:7077 scripts/xray_submit.py stream --once --lakehouse /shared/lakehouse

The xray-lakehouse wheel must be installed for the driver's and the executors' Python (PYSPARK_PYTHON).
"""

import sys

from streaming.cli import main

if __name__ == "__main__":
    sys.exit(main())
