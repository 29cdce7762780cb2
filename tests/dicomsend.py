"""A modality in its own process: ``python tests/dicomsend.py PORT CALLING_AE FILE...`` sends the files on
one association (pynetdicom Storage SCU) and prints each status, one JSON list on stdout."""

import json
import sys

_tests = sys.path.pop(0)  # this folder's streaming/ (the tests' packages) would shadow the real package
import streaming.ingest.receive  # noqa: E402, F401 - imported before tests/ is on the path again

sys.path.append(_tests)
from dicomscu import dataset, send  # noqa: E402

if __name__ == "__main__":
    port, calling_ae, *files = sys.argv[1:]
    datasets = [dataset(open(name, "rb").read()) for name in files]
    print(json.dumps(send(int(port), datasets, calling_ae=calling_ae)))
