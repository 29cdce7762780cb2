"""Staging into landing: the real kaggle client against a fake Kaggle server, local folders, archives."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from fake_kaggle import FakeKaggle, kaggle_layout_files, make_zip, port_is_free, tiny_jpeg, tiny_png

from streaming.core.errors import IngestError
from streaming.ingest import (
    SourceImage,
    StagingOptions,
    archive_images,
    ingest_folder,
    ingest_kaggle,
    is_complete_image,
    place_file,
    plan_staging,
    safe_extract,
)

TABLE = "bronze_kaggle_dataset_info"


# ---- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def kaggle_imported(tmp_path_factory):
    """Import `kaggle` once with no credentials around: its import authenticates as a side effect, and
    with a token that would call the production API."""
    home = tmp_path_factory.mktemp("kaggle-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("KAGGLE_")]:
            patch.delenv(name)
        patch.setenv("HOME", str(home))
        patch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
        with contextlib.redirect_stdout(io.StringIO()):
            import kaggle  # noqa: F401


@pytest.fixture
def kaggle_env(kaggle_imported, tmp_path, monkeypatch):
    """A clean Kaggle environment: own HOME and config dir, no credentials, client pointed at the fake."""
    for name in [n for n in os.environ if n.startswith("KAGGLE_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    # A developer's proxy settings must not capture the calls to the local fake.
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    return home


def _serve(files: dict[str, bytes]):
    if not port_is_free():
        pytest.skip("port 7777 (kagglesdk's fixed TEST endpoint) is in use")
    return FakeKaggle(make_zip(files))


@pytest.fixture
def fake():
    """The fake Kaggle API serving the Kaggle-layout zip."""
    server = _serve(kaggle_layout_files()).start()
    yield server
    server.stop()


def _login(monkeypatch, server: FakeKaggle, key: str | None = None) -> str:
    monkeypatch.setenv("KAGGLE_USERNAME", server.username)
    monkeypatch.setenv("KAGGLE_KEY", key or server.key)
    return key or server.key


def _landing_files(config) -> list[Path]:
    if not config.landing_dir.exists():
        return []
    return sorted(p for p in config.landing_dir.rglob("*") if p.is_file())


def _rows(config) -> list[dict]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(config.table_path(TABLE))).to_pyarrow_table().to_pylist()
    for row in rows:
        row["files_per_split_label"] = dict(row["files_per_split_label"])
    return rows


def _assert_secret_absent(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


class _LandingSpy(threading.Thread):
    """Reads every visible landing file as soon as it appears: each must already be whole."""

    def __init__(self, landing: Path):
        super().__init__(daemon=True)
        self.landing, self.stop_event = landing, threading.Event()
        self.seen: set[Path] = set()
        self.partial: list[Path] = []

    def run(self) -> None:
        while not self.stop_event.is_set():
            for path in self.landing.rglob("*") if self.landing.exists() else []:
                if path.name.startswith(".") or path in self.seen or not path.is_file():
                    continue
                self.seen.add(path)
                if not is_complete_image(path):
                    self.partial.append(path)
            time.sleep(0.002)


# ---- pure helpers ------------------------------------------------------------------------------------------
def test_plan_staging_layout_sampling_and_duplicates():
    files = kaggle_layout_files(per_group=4)
    images = [SourceImage(name, len(data), str(hash(data))) for name, data in files.items()]
    images.append(SourceImage("loose/scan.png", 10))
    images.append(SourceImage("other/val/unknown-label.jpeg", 10))

    plan = plan_staging(images)
    targets = [str(p.target) for p in plan]
    assert len(targets) == len(set(targets)), "the nested chest_xray/chest_xray copy is staged once"
    assert all(not p.source.startswith("chest_xray/chest_xray/") for p in plan)
    assert not any("__MACOSX" in p.source or p.name.startswith(".") for p in plan)
    assert "train/NORMAL/IM-0001-0001.jpeg" in targets
    assert {"unlabelled/scan.png", "unlabelled/unknown-label.jpeg"} <= set(targets)
    assert sum(1 for p in plan if p.group != "unlabelled") == 3 * 2 * 4

    sample = plan_staging(images, StagingOptions(sample_per_class=2, splits=("train", "test"), seed=7))
    groups = {}
    for planned in sample:
        groups[planned.group] = groups.get(planned.group, 0) + 1
    assert groups == {"train/NORMAL": 2, "train/PNEUMONIA": 2, "test/NORMAL": 2, "test/PNEUMONIA": 2,
                      "unlabelled": 1}, "the val split and the val-less unknown label are left out"
    assert sample == plan_staging(images, StagingOptions(sample_per_class=2, splits=("test", "train"), seed=7))
    reseeded = plan_staging(images, StagingOptions(sample_per_class=2, splits=("train", "test"), seed=8))
    assert {p.source for p in reseeded} != {p.source for p in sample}

    with pytest.raises(IngestError, match="unknown split"):
        StagingOptions(splits=("training",))


def test_place_file_is_atomic_and_handles_name_clashes(tmp_path):
    first, other = tmp_path / "a.jpeg", tmp_path / "b.jpeg"
    first.write_bytes(tiny_jpeg(1))
    other.write_bytes(tiny_jpeg(2))
    landing = tmp_path / "landing" / "test" / "PNEUMONIA"

    path, status = place_file(first, landing, "person1_virus_6.jpeg")
    assert (status, path.read_bytes()) == ("placed", first.read_bytes())
    assert place_file(first, landing, "person1_virus_6.jpeg")[1] == "duplicate"
    path, status = place_file(other, landing, "person1_virus_6.jpeg")
    # The suffix keeps the patient the name encodes (person1), so patient-grouped splits stay right.
    assert (status, path.name) == ("renamed", "person1_virus_6_1.jpeg")
    path, status = place_file(other, landing, "IM-0001-0001.jpeg", move=True)
    assert status == "placed" and not other.exists()
    assert sorted(p.name for p in landing.iterdir()) == [
        "IM-0001-0001.jpeg", "person1_virus_6.jpeg", "person1_virus_6_1.jpeg"]


def _zip_with(name: str) -> dict[str, bytes]:
    files = {"chest_xray/train/NORMAL/IM-0001-0001.jpeg": tiny_jpeg(1)}
    files[name] = tiny_jpeg(2)
    return files


def _tar_with_link(path: Path, kind: bytes) -> Path:
    with tarfile.open(path, "w") as archive:
        data = tiny_jpeg(1)
        info = tarfile.TarInfo("chest_xray/train/NORMAL/IM-0001-0001.jpeg")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("chest_xray/train/NORMAL/link.jpeg")
        link.type = kind
        link.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else info.name
        archive.addfile(link)
    return path


@pytest.mark.parametrize("member", ["../evil.jpeg", "/tmp/evil.jpeg", "C:/evil.jpeg", "ok/../../evil.jpeg",
                                    "..\\evil.jpeg"])
def test_safe_extract_refuses_escaping_zip_members(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(make_zip(_zip_with(member)))
    target = tmp_path / "out" / "extract"
    with pytest.raises(IngestError, match="refusing archive") as caught:
        safe_extract(archive, target)
    assert repr(member) in str(caught.value) and "\n" not in str(caught.value)
    assert not target.exists(), "nothing is extracted from an unsafe archive"
    with pytest.raises(IngestError):
        archive_images(archive)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_safe_extract_refuses_tar_links(tmp_path, kind):
    archive = _tar_with_link(tmp_path / "bad.tar", kind)
    target = tmp_path / "extract"
    with pytest.raises(IngestError, match="link.jpeg.*link"):
        safe_extract(archive, target)
    assert not target.exists()


def test_safe_extract_writes_only_contents(tmp_path):
    archive = tmp_path / "good.zip"
    archive.write_bytes(make_zip(kaggle_layout_files(per_group=1)))
    wanted = "chest_xray/test/PNEUMONIA/person4_bacteria_6.jpeg"
    written = safe_extract(archive, tmp_path / "x", members=[wanted])
    assert written == [tmp_path / "x" / wanted]
    assert written[0].read_bytes() == kaggle_layout_files(per_group=1)[wanted]


# ---- Kaggle -----------------------------------------------------------------------------------------------
def test_ingest_kaggle_stages_sample_and_records_dataset(spark, config, kaggle_env, fake, monkeypatch,
                                                         caplog, capsys):
    key = _login(monkeypatch, fake)
    caplog.set_level(logging.DEBUG)
    spy = _LandingSpy(config.landing_dir)
    spy.start()
    try:
        report = ingest_kaggle(spark, config, sample_per_class=2, splits=("train", "test"), seed=3,
                               batch_files=3, interval_seconds=0.05)
    finally:
        spy.stop_event.set()
        spy.join()

    expected_groups = {"test/NORMAL": 2, "test/PNEUMONIA": 2, "train/NORMAL": 2, "train/PNEUMONIA": 2}
    assert report.per_split_label == expected_groups
    assert report.files_staged == 8 and report.skipped_duplicates == 0
    sources = kaggle_layout_files()
    landed = _landing_files(config)
    assert len(landed) == 8
    for path in landed:
        relative = path.relative_to(config.landing_dir).as_posix()
        split, label, _ = relative.split("/")
        assert split in ("train", "test") and label in ("NORMAL", "PNEUMONIA")
        assert path.read_bytes() == sources[f"chest_xray/{relative}"]
    assert report.bytes_staged == sum(p.stat().st_size for p in landed)
    assert spy.seen == set(landed) and spy.partial == [], "only whole files ever appear under visible names"
    assert not list((config.root / ".staging").iterdir()), "the extraction folder is cleaned up"

    (row,) = _rows(config)
    assert row["dataset_ref"] == "paultimothymooney/chest-xray-pneumonia" and row["source"] == "kaggle"
    assert (row["title"], row["version"], row["license"]) == (fake.title, 2, "CC BY 4.0")
    assert (row["file_count"], row["total_bytes"]) == (8, report.bytes_staged)
    assert row["files_per_split_label"] == expected_groups
    assert json.loads(row["sampling_options"]) == {
        "sample_per_class": 2, "splits": ["train", "test"], "seed": 3, "batch_files": 3,
        "interval_seconds": 0.05}
    assert row["downloaded_time"] is not None

    assert any(p.endswith("/GetDataset") for p in fake.paths)
    assert any(p.endswith("/DownloadDataset") for p in fake.paths)
    assert any(p.startswith("/storage/") for p in fake.paths)
    out = capsys.readouterr()
    _assert_secret_absent(key, caplog.text, out.out, out.err)


def test_missing_credentials_name_the_settings(config, kaggle_env):
    with pytest.raises(IngestError) as caught:
        ingest_kaggle(None, config)
    message = str(caught.value)
    for needed in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "kaggle.json"):
        assert needed in message
    assert "\n" not in message
    assert _landing_files(config) == []


def test_wrong_key_is_a_clear_401_without_the_key(config, kaggle_env, fake, monkeypatch, caplog, capsys):
    key = _login(monkeypatch, fake, key="wrong-secret-key-987654321")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IngestError, match="rejected the credentials.*HTTP 401") as caught:
        ingest_kaggle(None, config)
    out = capsys.readouterr()
    _assert_secret_absent(key, str(caught.value), caplog.text, out.out, out.err)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert _landing_files(config) == []


def test_rejected_token_is_reported_without_the_token(config, kaggle_env, fake, monkeypatch, caplog, capsys):
    token = "KGAT_not_the_right_one_123456"
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IngestError, match="KAGGLE_API_TOKEN"):
        ingest_kaggle(None, config)
    out = capsys.readouterr()
    _assert_secret_absent(token, caplog.text, out.out, out.err)
    assert fake.paths[0].endswith("/IntrospectToken")


def test_kaggle_json_readable_by_others_warns(config, kaggle_env, fake, caplog, capsys):
    credentials = kaggle_env / ".kaggle" / "kaggle.json"
    credentials.write_text(json.dumps({"username": fake.username, "key": "stale-key-1122334455"}))
    credentials.chmod(0o644)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(IngestError, match=f"rejected the credentials from {credentials}"):
        ingest_kaggle(None, config)
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and "readable by other" in r.getMessage()]
    message = warnings[0].getMessage()
    assert len(warnings) == 1 and str(credentials) in message and "\n" not in message
    out = capsys.readouterr()
    _assert_secret_absent("stale-key-1122334455", caplog.text, out.out, out.err)

    caplog.clear()
    credentials.chmod(0o600)
    with pytest.raises(IngestError):
        ingest_kaggle(None, config)
    assert not [r for r in caplog.records if "readable by other" in r.getMessage()]


def test_unknown_dataset_is_404(config, kaggle_env, fake, monkeypatch):
    _login(monkeypatch, fake)
    with pytest.raises(IngestError, match=r"someone/no-such-dataset not found \(HTTP 404\)"):
        ingest_kaggle(None, config.with_overrides(kaggle_dataset="someone/no-such-dataset"))
    assert _landing_files(config) == []


def test_no_network_is_reported(config, kaggle_env, monkeypatch):
    if not port_is_free():
        pytest.skip("something listens on port 7777, so the closed-port case cannot be made")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "some-key-0000000000")
    with pytest.raises(IngestError, match="cannot reach the Kaggle API at http://localhost:7777 "
                                          r"\(connection refused\)") as caught:
        ingest_kaggle(None, config)
    assert "some-key-0000000000" not in str(caught.value)
    assert _landing_files(config) == []


@pytest.mark.parametrize("member", ["../evil.jpeg", "/tmp/xray-evil-absolute.jpeg"])
def test_zip_slip_from_kaggle_is_refused_before_landing(config, kaggle_env, monkeypatch, member):
    files = {**kaggle_layout_files(per_group=1), member: tiny_jpeg(99)}
    with _serve(files) as server:
        _login(monkeypatch, server)
        with pytest.raises(IngestError, match="refusing archive") as caught:
            ingest_kaggle(None, config)
    assert repr(member) in str(caught.value)
    assert _landing_files(config) == []
    assert not (config.root / "evil.jpeg").exists() and not (config.root.parent / "evil.jpeg").exists()
    assert not Path("/tmp/xray-evil-absolute.jpeg").exists()
    staging = config.root / ".staging"
    assert not staging.exists() or not any(staging.iterdir())  # nothing of the archive left half-staged


# ---- local folders ----------------------------------------------------------------------------------------
def test_ingest_folder_stages_everything_then_skips_duplicates(spark, config, tmp_path):
    source = tmp_path / "xrays"
    for name, data in kaggle_layout_files(per_group=2).items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    (source / "loose").mkdir()
    (source / "loose" / "scan.PNG").write_bytes(tiny_png(5))
    (source / "loose" / "notes.txt").write_text("not an image")

    report = ingest_folder(spark, config, source)
    assert report.per_split_label == {f"{s}/{lbl}": 2 for s in ("train", "test", "val")
                                      for lbl in ("NORMAL", "PNEUMONIA")} | {"unlabelled": 1}
    assert report.files_staged == 13
    assert (config.landing_dir / "unlabelled" / "scan.PNG").read_bytes() == tiny_png(5)
    assert (source / "loose" / "scan.PNG").exists(), "a folder source is copied, never moved"
    assert not [p for p in config.landing_dir.rglob(".*")], "no temporary names left behind"

    again = ingest_folder(spark, config, source, sample_per_class=1, splits=("val",))
    assert (again.files_staged, again.skipped_duplicates) == (0, 3)

    rows = sorted(_rows(config), key=lambda r: r["file_count"])
    assert [(r["source"], r["file_count"]) for r in rows] == [("folder", 0), ("folder", 13)]
    assert rows[1]["dataset_ref"] == str(source.resolve())
    assert rows[1]["files_per_split_label"]["train/NORMAL"] == 2


def test_ingest_folder_missing_path(config, tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        ingest_folder(None, config, tmp_path / "nowhere")


def test_ingest_folder_refuses_unsafe_archive(config, tmp_path):
    archive = tmp_path / "copy.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("chest_xray/train/NORMAL/IM-0001-0001.jpeg", tiny_jpeg(1))
        handle.writestr("../../evil.jpeg", tiny_jpeg(2))
    with pytest.raises(IngestError, match="'../../evil.jpeg'"):
        ingest_folder(None, config, archive)
    assert _landing_files(config) == []


def test_staging_a_split_folder_keeps_its_split_and_labels_without_split_are_kept():
    images = [SourceImage("NORMAL/IM-0001-0001.jpeg", 10), SourceImage("PNEUMONIA/person1_virus_1.jpeg", 10)]
    inside_train = plan_staging(images, source_prefix="train")
    assert [str(p.target) for p in inside_train] == [
        "train/NORMAL/IM-0001-0001.jpeg", "train/PNEUMONIA/person1_virus_1.jpeg"]
    no_split = plan_staging(images, source_prefix="my-xrays")
    assert [str(p.target) for p in no_split] == [
        "unsplit/NORMAL/IM-0001-0001.jpeg", "unsplit/PNEUMONIA/person1_virus_1.jpeg"]
