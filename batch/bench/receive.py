"""``xray bench --only receive``: instances/s and MB/s that `xray receive` takes in over C-STORE, against a
plain pynetdicom SCP that only writes each instance to a file (no fsync, no exactly-once), on the same
instances in the same run, sent by one SCU on loopback; rounds interleaved, best of each.

The ratio is the cost of the guarantees (hidden name, fsync, link, receipts). Next to the pipeline's
landing → gold rate (when ``pipeline`` ran too) it says whether the receiver could be what limits landing
→ gold: it must not be.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from batch.bench.context import BenchContext
from batch.bench.dicomcopy import dicom_copies
from batch.bench.report import say

__all__ = ["RECEIVE_INSTANCES", "RECEIVE_ROUNDS", "bench_receive"]

RECEIVE_INSTANCES = 200
RECEIVE_ROUNDS = 2


def _plain_scp(folder: Path):  # pynetdicom's server
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt

    from streaming.ingest.receive import STORAGE_SOP_CLASSES

    def store(event) -> int:
        (folder / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="PLAIN")
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    return ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])


def _send_all(port: int, datasets: list) -> float:
    """Seconds to send every instance on one association; every one must be acknowledged."""
    from pynetdicom import AE

    from streaming.ingest.receive import STORAGE_SOP_CLASSES

    ae = AE(ae_title="BENCH")
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
    clock = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port)
    if not assoc.is_established:
        raise RuntimeError("the SCP refused the bench's association")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if int(status.get("Status", -1)) != 0:
                raise RuntimeError(f"an instance was not stored (status {status.get('Status')})")
    finally:
        assoc.release()
    return time.perf_counter() - clock


def _round(ctx: BenchContext, kind: str, datasets: list, number: int) -> float:
    from streaming.ingest.receive import DicomReceiver, receive_address

    folder = ctx.work / "receive" / f"{kind}-{number}"
    folder.mkdir(parents=True)
    if kind == "plain":
        server = _plain_scp(folder)
        try:
            return _send_all(server.server_address[1], datasets)
        finally:
            server.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
    config = dataclasses.replace(ctx.config, lakehouse=folder, receive_port=0)
    receiver = DicomReceiver(config, receive_address(config))
    receiver.start()
    try:
        return _send_all(receiver.port, datasets)
    finally:
        receiver.stop()
        shutil.rmtree(folder, ignore_errors=True)


def bench_receive(ctx: BenchContext) -> dict[str, Any]:
    import pydicom

    files = ctx.dicom_files or dicom_copies(ctx.files[:RECEIVE_INSTANCES], ctx.work / "receive-dicom")
    files = files[:RECEIVE_INSTANCES]
    datasets = [pydicom.dcmread(item.path) for item in files]
    megabytes = sum(item.size for item in files) / 1e6
    best: dict[str, float] = {}
    for number in range(RECEIVE_ROUNDS):
        for kind in ("plain", "receive"):
            seconds = _round(ctx, kind, datasets, number)
            say(f"    {kind} round {number + 1}: {len(datasets)} instances in {seconds:.2f} s")
            best[kind] = min(seconds, best.get(kind, seconds))
    rates = {kind: {"seconds": round(s, 2), "instances_per_second": round(len(datasets) / s, 1),
                    "mb_per_second": round(megabytes / s, 1)} for kind, s in best.items()}
    pipeline = (ctx.results.get("pipeline") or {})
    landing_to_gold = (pipeline.get("warm") or pipeline.get("cold") or {}).get("images_per_second")
    return {"instances": len(datasets), "megabytes": round(megabytes, 1), "rounds": RECEIVE_ROUNDS, **rates,
            "ratio_to_plain": round(best["plain"] / best["receive"], 2),
            "pipeline_images_per_second": landing_to_gold}
