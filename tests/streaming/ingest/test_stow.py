"""STOW-RS: the real DICOMweb client (dicomweb-client) posts instances to the endpoint on 127.0.0.1; each is
in landing once, before the answer, which lists stored and failed instances as PS3.18 says."""

from __future__ import annotations

import dataclasses

import pydicom
import pytest
import requests
from dicomfiles import dicom_of, radiograph
from dicomscu import dataset
from dicomweb_client.api import DICOMwebClient

from streaming.core.errors import ConfigError
from streaming.imaging.dicomwrite import DicomSpec, dicom_bytes
from streaming.ingest.dicomland import LabelRules
from streaming.ingest.receive import STORAGE_SOP_CLASSES
from streaming.ingest.stow import SOP_CLASS_NOT_SUPPORTED, check_stow, start_stow

TOKEN = "a-long-random-test-token"


@pytest.fixture
def stow(config):
    config = dataclasses.replace(config, stow_token=TOKEN)
    server = start_stow(config, LabelRules(config), set(STORAGE_SOP_CLASSES))
    yield config, f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def _client(url: str, token: str = TOKEN) -> DICOMwebClient:
    return DICOMwebClient(url=url, headers={"Authorization": f"Bearer {token}"})


def _landed(config):
    return sorted(p.name for p in config.landing_dir.rglob("*") if p.is_file())


def test_dicomweb_client_stores_each_instance_once(stow):
    config, url, server = stow
    datasets = [dataset(dicom_of(radiograph(i))) for i in range(3)]
    datasets.append(dataset(dicom_bytes(radiograph(3, size=(1024, 1024)), DicomSpec())))  # > 1 MB: chunked
    answer = _client(url).store_instances(datasets)
    stored = [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence]
    assert stored == [ds.SOPInstanceUID for ds in datasets] and "FailedSOPSequence" not in answer
    assert _client(url).store_instances(datasets[:2]).ReferencedSOPSequence  # again: nothing added
    assert _landed(config) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in datasets)
    for ds in datasets:
        assert pydicom.dcmread(config.landing_dir / "unlabelled" / f"{ds.SOPInstanceUID}.dcm").PixelData == ds.PixelData
    assert server.counts["stored"] == 4 and server.counts["duplicates"] == 2


def test_a_partly_failed_request_answers_202_with_the_failed_instances(stow):
    config, url, _ = stow
    good = dataset(dicom_of(radiograph(5)))
    other = dataset(dicom_of(radiograph(6)))
    other.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage: no radiograph
    answer = _client(url).store_instances([good, other])
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [good.SOPInstanceUID]
    failed = answer.FailedSOPSequence[0]
    assert failed.ReferencedSOPInstanceUID == other.SOPInstanceUID and failed.FailureReason == SOP_CLASS_NOT_SUPPORTED
    assert _landed(config) == [f"{good.SOPInstanceUID}.dcm"]
    with pytest.raises(requests.HTTPError) as refused:  # nothing stored: 409
        _client(url).store_instances([other])
    assert refused.value.response.status_code == 409


def test_requests_without_the_token_or_of_another_kind_are_refused(stow):
    config, url, _ = stow
    ds = dataset(dicom_of(radiograph(7)))
    with pytest.raises(requests.HTTPError) as unauthorised:
        _client(url, token="wrong").store_instances([ds])
    assert unauthorised.value.response.status_code == 401
    plain = requests.post(f"{url}/studies", data=b"x", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert plain.status_code == 415
    boundary = "b0undary"
    cut = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + dicom_of(radiograph(8))[:5000]
    truncated = requests.post(f"{url}/studies", data=cut, timeout=30, headers={
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert truncated.status_code == 400  # no closing boundary: it may end inside an instance
    assert _landed(config) == []


def test_stow_settings_are_checked(config):
    check_stow(config, allow_remote=False)  # off
    with pytest.raises(ConfigError, match="stow_token is empty"):
        check_stow(dataclasses.replace(config, stow_port=8080), allow_remote=False)
    remote = dataclasses.replace(config, stow_port=8080, stow_token=TOKEN, stow_host="0.0.0.0")
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_stow(remote, allow_remote=False)
    check_stow(remote, allow_remote=True)
