"""satclip.load sources, safe unpickling, hub fallback and format conversion."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError, OutputExistsError, SatclipError, UnknownNameError
from satclip.io import hub, native, original
from satclip.io.convert import convert
from satclip.io.safe_pickle import UntrustedCheckpointError

from .conftest import REFERENCE, require

CKPT_L10 = REFERENCE / "satclip-resnet18-l10.ckpt"


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(1)
    return np.stack([rng.uniform(-180, 180, 300), rng.uniform(-90, 90, 300)], 1)


def test_import_is_light():
    code = (
        "import sys, satclip; satclip.load; "
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'timm', 'torchgeo', 'rasterio', 'huggingface_hub', "
        "'sympy', 'pandas', 'matplotlib') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_original_needs_no_heavy_modules():
    require(CKPT_L10)
    code = (
        f"import sys, satclip; satclip.load({str(CKPT_L10)!r}); "
        "heavy = [m for m in ('lightning', 'pytorch_lightning', 'timm', 'torchgeo', 'rasterio', 'huggingface_hub') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loaded_encoder_is_in_eval_mode_and_deterministic(points):
    encoder = satclip.load(require(CKPT_L10))
    assert not encoder.training
    assert encoder.dtype == torch.float32
    assert torch.equal(encoder.encode(points), encoder.encode(points))
    assert encoder.encode(points).shape == (300, 256)


class _Payload:
    """Pickles to a call that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _malicious_checkpoint(tmp_path, legacy: bool):
    marker = tmp_path / "payload-ran"
    path = tmp_path / ("legacy.ckpt" if legacy else "evil.ckpt")
    ckpt = torch.load(require(CKPT_L10), weights_only=True)
    ckpt["callbacks"] = {"evil": _Payload(marker)}
    # legacy: torch's older format, a pickle after torch's magic number (a plain pickle is no torch file at all:
    # refused before anything is read, tests/test_io_unreadable_checkpoint.py)
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path, marker


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_without_running(tmp_path, legacy, recwarn):
    path, marker = _malicious_checkpoint(tmp_path, legacy)
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint=True") as info:
        satclip.load(path)
    # names the offending globals (for a plain pickle too: it gave torch's whole paragraph instead)
    assert re.search(r"needs the Python global\(s\) ([\w.]+, )*(posix|os)\.mkdir, which", str(info.value))
    assert "\n" not in str(info.value) and not [w for w in recwarn if "pickle protocol" in str(w.message)]
    assert not marker.exists()


def test_trust_checkpoint_opt_in_unpickles(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path, legacy=False)
    satclip.load(path, trust_checkpoint=True)
    assert marker.exists()  # the opt-in really does run the file's code: that is why it is opt-in


def test_native_round_trip(tmp_path, points):
    out = tmp_path / "model"
    assert main(["convert", str(require(CKPT_L10)), str(out)]) == 0
    assert native.is_native(out)
    config, tensors = native.read_native(out)
    assert config["location_encoder"]["encoding"] == {
        "name": "sphericalharmonics",
        "legendre_polys": 10,
        "harmonics_calculation": "analytic",
    }
    assert any(k.startswith("visual.") for k in tensors) and "logit_scale" in tensors
    a = satclip.load(CKPT_L10, dtype=torch.float64).encode(points)
    b = satclip.load(out, dtype=torch.float64).encode(points)
    assert torch.equal(a, b)


def test_native_to_original_matches_released_layout(tmp_path):
    out = tmp_path / "model"
    back = tmp_path / "back.ckpt"
    assert main(["convert", str(require(CKPT_L10)), str(out)]) == 0
    assert main(["convert", str(out), str(back)]) == 0
    ours = torch.load(back, weights_only=True)
    theirs = torch.load(CKPT_L10, weights_only=True)
    assert ours["hyper_parameters"] == theirs["hyper_parameters"]
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key
    # the original loader pops these three keys and then builds the model from the rest
    hparams = dict(ours["hyper_parameters"])
    for key in original.RELEASED_EXTRA_HPARAMS:
        hparams.pop(key)
    assert set(hparams) == set(original.RELEASED_HPARAMS)


def test_location_only_conversion(tmp_path, points):
    out = tmp_path / "loc"
    assert main(["convert", "--location-only", str(require(CKPT_L10)), str(out)]) == 0
    _, tensors = native.read_native(out)
    assert all(k.startswith("location.") for k in tensors)
    assert torch.equal(satclip.load(out).encode(points), satclip.load(CKPT_L10).encode(points))


def test_harmonics_override(points):
    exact = satclip.load(require(CKPT_L10), dtype=torch.float64, harmonics_calculation="analytic-stable")
    assert exact.posenc.harmonics_calculation == "analytic-stable"
    released = satclip.load(CKPT_L10, dtype=torch.float64)
    # at L = 10 the two bases agree to ~1e-12 (docs/conventions.md)
    assert torch.allclose(exact.encode(points), released.encode(points), atol=1e-9, rtol=0)


class FakeHub:
    """``huggingface_hub``'s network functions replaced by a fake transport that records every call.

    ``files`` maps (repo_id, filename) to a local file the hub "serves"; ``cached`` those in the local
    cache; ``probe_error`` / ``download_error`` are raised by the reachability check / the download.
    """

    def __init__(self, monkeypatch, *, files=None, cached=None, probe_error=None, download_error=None, etag=None):
        hf = pytest.importorskip("huggingface_hub")
        self.errors = pytest.importorskip("huggingface_hub.errors")
        self.files, self.cached = dict(files or {}), dict(cached or {})
        self.probe_error, self.download_error = probe_error, download_error
        self.etag = etag  # what the hub publishes for every file (for an LFS file: its sha256, quoted)
        self.calls: list[tuple] = []
        monkeypatch.setattr(hf, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(hf, "hf_hub_download", self.download)
        monkeypatch.setattr(hf, "list_repo_files", self.list_repo_files)

    def metadata(self, url, **kwargs):
        self.calls.append(("metadata", url))
        if self.probe_error is not None:
            raise self.probe_error
        return SimpleNamespace(etag=self.etag)

    def download(self, repo_id, filename, *, local_files_only=False, **kwargs):
        self.calls.append(("download", repo_id, filename, local_files_only))
        if local_files_only:
            if (repo_id, filename) in self.cached:
                return str(self.cached[repo_id, filename])
            raise self.errors.LocalEntryNotFoundError("Cannot find the requested files in the disk cache")
        if self.download_error is not None:
            raise self.download_error
        return str(self.files[repo_id, filename])

    def list_repo_files(self, repo_id, **kwargs):
        self.calls.append(("list", repo_id))
        return sorted(f for r, f in self.files if r == repo_id)


@pytest.fixture
def online(monkeypatch):
    """As if the machine had network (conftest sets HF_HUB_OFFLINE=1); the transport is still faked."""
    constants = pytest.importorskip("huggingface_hub.constants")  # (imported first: it reads the variable once)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def no_sockets(monkeypatch):
    """Every attempt to open a connection is recorded and fails."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)
    return attempts


RELEASED_L10 = ("microsoft/SatCLIP-ResNet18-L10", "satclip-resnet18-l10.ckpt")
# pinned to the revision torchgeo 0.10.1 uses (satclip.pretrained)
L40_URL = (
    "https://huggingface.co/microsoft/SatCLIP-ViT16-L40/resolve/0ef2acc0b91d3c8cfdf4a0cc03207095989287ab/"
    "satclip-vit16-l40.ckpt"
)


def test_registry_name_downloads_through_hub(monkeypatch, online, no_sockets, points):
    fake = FakeHub(monkeypatch, files={RELEASED_L10: require(CKPT_L10)})
    encoder = satclip.load("satclip-resnet18-l10")
    assert [c for c in fake.calls if c[0] == "download"] == [("download", *RELEASED_L10, False)]
    assert torch.equal(encoder.encode(points), satclip.load(CKPT_L10).encode(points))
    for source in ("microsoft/SatCLIP-ResNet18-L10", "hf://microsoft/SatCLIP-ResNet18-L10"):
        fake.calls.clear()
        satclip.load(source)
        assert fake.calls[-1] == ("download", *RELEASED_L10, False)
    assert no_sockets == []


def test_hf_scheme_reaches_any_repository(monkeypatch, online, no_sockets, tmp_path, points):
    model = tmp_path / "native"
    convert(require(CKPT_L10), model, location_only=True)
    files = {("someone/model", f): model / f for f in (native.CONFIG_FILE, native.WEIGHTS_FILE)}
    fake = FakeHub(monkeypatch, files=files)
    encoder = satclip.load("hf://someone/model")
    assert ("list", "someone/model") in fake.calls
    assert torch.equal(encoder.encode(points), satclip.load(model).encode(points))
    # the weights are fetched at the commit the config came from (two unpinned requests could pair a config
    # and weights of different pushes)
    snapshot = tmp_path / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in (native.CONFIG_FILE, native.WEIGHTS_FILE):
        (snapshot / name).write_bytes((model / name).read_bytes())
        fake.files["someone/model", name] = snapshot / name
    revisions = []

    def download(repo_id, filename, **kwargs):
        revisions.append(kwargs.get("revision"))
        return fake.download(repo_id, filename, **kwargs)

    monkeypatch.setattr(pytest.importorskip("huggingface_hub"), "hf_hub_download", download)
    assert torch.equal(satclip.load("hf://someone/model").encode(points), satclip.load(model).encode(points))
    assert revisions == [None, "a" * 40]
    with pytest.raises(FileNotFoundError, match="hf://someone/model"):
        satclip.load("someone/model")  # without hf:// it is a (missing) local path
    with pytest.raises(ValueError, match="not a Hugging Face repository id"):
        satclip.load("hf://../etc")


@pytest.fixture
def hub_cache(monkeypatch, tmp_path):
    """A hub cache of this test's own (``huggingface_hub`` reads HF_HOME once, at import)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _hub_cache_entry(cache: Path, repo_id: str, filename: str, content: Path, blob_name: str) -> Path:
    """``content`` placed in the hub ``cache`` as ``huggingface_hub`` lays it out: a snapshot entry linking
    to ``blobs/<blob_name>`` (for an LFS file, its sha256)."""
    import shutil

    from satclip import pretrained

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = pretrained.released_for_hub_id(repo_id).revision or "c" * 40
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / blob_name
    shutil.copyfile(content, blob)
    entry = repo / "snapshots" / commit / filename
    entry.unlink(missing_ok=True)
    entry.symlink_to(os.path.relpath(blob, entry.parent))
    return entry


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_released_checkpoints_are_checked_against_the_hub_sha256(monkeypatch, online, points):
    """Released files (no pinned sha256 known) were never hashed: a damaged download or cache entry, or
    another file under a release's name, loaded as that release."""
    ckpt = require(CKPT_L10)
    fake = FakeHub(monkeypatch, files={RELEASED_L10: ckpt}, etag='"' + "0" * 64 + '"')
    with pytest.raises(hub.DownloadError, match="the sha256 the hub publishes for it.* expected 0{64}"):
        satclip.load("satclip-resnet18-l10")
    fake.etag = f'"{_sha256(ckpt)}"'
    assert torch.equal(satclip.load("satclip-resnet18-l10").encode(points), satclip.load(ckpt).encode(points))


def test_hub_cache_entries_are_checked_against_their_blob_names(no_sockets, hub_cache, points):
    """Offline, the cache is used: its blob names are the files' sha256."""
    ckpt = require(CKPT_L10)
    entry = _hub_cache_entry(hub_cache, *RELEASED_L10, ckpt, "0" * 64)
    with pytest.raises(hub.DownloadError, match="its hub cache entry is named by") as err:
        satclip.load("satclip-resnet18-l10")
    # the damaged blob is named too: deleting the entry alone, huggingface_hub linked the same blob again
    assert f"delete it and the file it links to, {entry.resolve()}, and fetch it again" in str(err.value)
    _hub_cache_entry(hub_cache, *RELEASED_L10, ckpt, _sha256(ckpt))
    assert torch.equal(satclip.load("satclip-resnet18-l10").encode(points), satclip.load(ckpt).encode(points))
    assert no_sockets == []


@pytest.mark.parametrize("hub_offline", [True, False])
def test_an_hf_repository_in_the_hub_cache_loads_offline(no_sockets, hub_cache, points, monkeypatch, hub_offline):
    """hf://owner/name failed offline ("cannot list the Hugging Face repository") though its snapshot was complete
    in the hub cache, where a released name was found; its files are listed from the cached snapshot."""
    import shutil

    from satclip import pretrained

    if hub_offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.DownloadError, match="the hub cache has no snapshot of it"):
        satclip.load("hf://someone/native")
    model = Path(pretrained.bundled_models()["bluemarble-l10"])
    repo, commit = hub_cache / "models--someone--native", "e" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        blob = repo / "blobs" / _sha256(model / name)
        shutil.copyfile(model / name, blob)
        (repo / "snapshots" / commit / name).symlink_to(os.path.relpath(blob, repo / "snapshots" / commit))
    loaded = satclip.load("hf://someone/native")
    assert torch.equal(loaded.encode(points), satclip.load(model).encode(points))
    assert Path(loaded.provenance["source"]).name == commit  # (the snapshot directory, a native model)


def test_another_checkpoint_under_a_release_name_is_refused(no_sockets, hub_cache, capsys, tmp_path):
    """A ResNet18 file in the cache entry of satclip-vit16-l40 (intact, so its sha256 matches its blob) loaded
    and embedded as satclip-vit16-l40."""
    l40 = require(REFERENCE / "satclip-resnet18-l40.ckpt")
    _hub_cache_entry(hub_cache, "microsoft/SatCLIP-ViT16-L40", "satclip-vit16-l40.ckpt", l40, _sha256(l40))
    with pytest.raises(hub.DownloadError) as info:
        satclip.load("satclip-vit16-l40")
    assert "is not the released satclip-vit16-l40.ckpt: its hyper_parameters give vision_layers 'moco_resnet18' " \
        "(the release: 'moco_vit16')" in str(info.value)
    never_written = tmp_path / "never-written"  # (a shared /tmp path: a stale copy failed every later run)
    assert main(["convert", "satclip-vit16-l40", str(never_written)]) == 1
    assert "is not the released" in capsys.readouterr().err and not never_written.exists()


def test_offline_hub_error_says_what_to_fetch(monkeypatch, no_sockets):
    # conftest sets HF_HUB_OFFLINE=1: only the cache is looked at, once
    fake = FakeHub(monkeypatch)
    with pytest.raises(hub.DownloadError) as info:
        satclip.load("satclip-vit16-l40")
    assert fake.calls == [("download", "microsoft/SatCLIP-ViT16-L40", "satclip-vit16-l40.ckpt", True)]
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and L40_URL in message
    assert "satclip.load('/path/to/satclip-vit16-l40.ckpt')" in message
    assert isinstance(info.value, SatclipError) and info.value.exit_code == 1
    assert no_sockets == []


@pytest.mark.parametrize("where", ["probe", "download"])
def test_connection_error_is_reported_once_without_retries(monkeypatch, online, no_sockets, caplog, where):
    unreachable = ConnectionError("[Errno -2] Name or service not known")
    if where == "probe":
        fake = FakeHub(monkeypatch, probe_error=unreachable)
    else:
        fake = FakeHub(monkeypatch, files={("microsoft/SatCLIP-ViT16-L40", "satclip-vit16-l40.ckpt"): CKPT_L10},
                       download_error=unreachable)  # fmt: skip
    with caplog.at_level(logging.INFO), pytest.raises(hub.DownloadError) as info:
        satclip.load("satclip-vit16-l40")
    downloads = [c for c in fake.calls if c[0] == "download"]
    assert len(downloads) == 1  # no retry: the cache is looked at once (probe failed) or the download failed once
    assert downloads[0][-1] is (where == "probe")
    assert "Name or service not known" in str(info.value) and L40_URL in str(info.value)
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]


def test_unreachable_hub_uses_the_cache(monkeypatch, online, no_sockets, points):
    fake = FakeHub(monkeypatch, cached={RELEASED_L10: require(CKPT_L10)}, probe_error=ConnectionError("down"))
    encoder = satclip.load("satclip-resnet18-l10")
    assert fake.calls[-1] == ("download", *RELEASED_L10, True)
    assert torch.equal(encoder.encode(points), satclip.load(CKPT_L10).encode(points))


def test_a_hub_that_did_not_answer_is_not_asked_for_what_the_cache_holds(monkeypatch, online, no_sockets, caplog):
    """Where the network drops packets, every load of a cached model waited for the check's 10 s: the next load in
    the process goes straight to the cache, until hub.UNANSWERED_FOR has passed. Using the cache is a debug line
    (at INFO it was a second line before a cached file's checksum error)."""
    fake = FakeHub(monkeypatch, cached={RELEASED_L10: require(CKPT_L10)}, probe_error=ConnectionError("timed out"))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            satclip.load("satclip-resnet18-l10")
    assert [c[0] for c in fake.calls] == ["metadata", "download", "download", "download"]
    assert all(c[-1] is True for c in fake.calls if c[0] == "download")  # (the cache, each time)
    assert not [r for r in caplog.records if r.name == hub.__name__]
    monkeypatch.setattr(hub, "UNANSWERED_FOR", 0.0)  # (later, the hub is asked again)
    fake.calls.clear()
    satclip.load("satclip-resnet18-l10")
    assert fake.calls[0][0] == "metadata"
    monkeypatch.setattr(hub, "UNANSWERED_FOR", 300.0)
    fake.calls.clear()  # a file the cache does not hold asks the hub again (the network may be back): it failed,
    # for 300 s, without asking
    with pytest.raises(hub.DownloadError, match=r"\(ConnectionError: timed out\) and it is not in the hub cache"):
        satclip.load("satclip-vit16-l40")
    assert [c[0] for c in fake.calls] == ["download", "metadata"]  # (the cache, then the hub)
    fake.probe_error = None  # the network is back: a check the hub answers is not remembered
    fake.files = fake.cached
    assert hub.unreachable("microsoft/SatCLIP-ResNet18-L10") is None
    fake.calls.clear()
    satclip.load("satclip-resnet18-l10")
    satclip.load("satclip-resnet18-l10")
    assert [c[0] for c in fake.calls].count("metadata") == 2


def test_an_answer_of_the_hub_is_not_taken_for_a_hub_away(monkeypatch, online, no_sockets):
    """An HTTP error (here a server error) is an answer: the next fetch asks the hub again."""
    errors = pytest.importorskip("huggingface_hub.errors")
    answer = SimpleNamespace(status_code=500, headers={}, request=None)
    failure = errors.HfHubHTTPError("500 Server Error", response=answer)
    fake = FakeHub(monkeypatch, cached={RELEASED_L10: require(CKPT_L10)}, probe_error=failure)
    satclip.load("satclip-resnet18-l10")
    satclip.load("satclip-resnet18-l10")
    assert [c[0] for c in fake.calls].count("metadata") == 2


def test_a_cached_file_of_a_pinned_commit_is_used_without_asking_the_hub(monkeypatch, online, no_sockets, hub_cache):
    """A released file at a pinned commit, in the hub cache, is read without the check (it cannot change there); it
    is checked against the sha256 its blob is named by all the same."""
    fake = FakeHub(monkeypatch, probe_error=ConnectionError("timed out"))
    repo_id, filename = "microsoft/SatCLIP-ViT16-L40", "satclip-vit16-l40.ckpt"
    commit = L40_URL.split("/resolve/")[1].split("/")[0]
    content = require(CKPT_L10)
    entry = _hub_cache_entry(hub_cache, repo_id, filename, content, _sha256(content))
    assert hub.fetch(repo_id, filename, revision=commit) == entry
    assert fake.calls == []
    _hub_cache_entry(hub_cache, repo_id, filename, content, "0" * 64)
    with pytest.raises(hub.DownloadError, match="its hub cache entry is named by"):
        hub.fetch(repo_id, filename, revision=commit)
    assert fake.calls == []
    fake.calls.clear()  # (a branch can move: the hub is asked)
    with pytest.raises(hub.DownloadError, match="not in the hub cache"):
        hub.fetch(repo_id, filename, revision="main")
    assert fake.calls[0][0] == "metadata"


def test_the_hub_clients_retries_are_not_logged(monkeypatch, online, no_sockets, caplog):
    """A stalled download printed huggingface_hub's own line per retry ("Trying to resume download…") before
    satclip's one-line error."""
    fake = FakeHub(monkeypatch, files={RELEASED_L10: require(CKPT_L10)}, download_error=TimeoutError("stalled"))
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    real = fake.download

    def download(*args, **kwargs):
        logging.getLogger("huggingface_hub.file_download").warning(
            "Error while downloading from %s: stalled\nTrying to resume download...", L40_URL
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(pytest.importorskip("huggingface_hub"), "hf_hub_download", download)
    with caplog.at_level(logging.INFO), pytest.raises(hub.DownloadError, match="stalled"):
        satclip.load("satclip-resnet18-l10")
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
    assert hub_logger.level == level  # (restored)


def test_overlapping_downloads_restore_the_hub_clients_log_level(monkeypatch):
    """Each download saved huggingface_hub's level and put it back: two threads' downloads that overlapped (the first
    ending first) left it silenced for the rest of the process."""
    hub_logger = logging.getLogger("huggingface_hub")
    monkeypatch.setattr(hub_logger, "level", logging.WARNING)
    first, second = hub._hub_log_quiet(), hub._hub_log_quiet()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert hub_logger.level == logging.CRITICAL  # (the second is still downloading)
    second.__exit__(None, None, None)
    assert hub_logger.level == logging.WARNING


def _not_found(status: int, gated: bool = False):
    errors = pytest.importorskip("huggingface_hub.errors")
    kind = errors.GatedRepoError if gated else errors.RepositoryNotFoundError
    answer = SimpleNamespace(status_code=status, headers={}, request=None)
    return kind(f"{status} Client Error. Repository Not Found", response=answer)


@pytest.mark.parametrize(("status", "gated", "said"), [
    (404, False, "no such Hugging Face repository someone/SatCLIP-typo: check the name"),
    (401, False, "no such Hugging Face repository someone/SatCLIP-typo, or it is private: check the name, or log in "
                 "with `hf auth login` (`huggingface-cli login` before huggingface_hub 0.34) or set HF_TOKEN"),
    (401, True, "the Hugging Face repository someone/SatCLIP-typo is gated: request access at "
                "https://huggingface.co/someone/SatCLIP-typo and log in"),
])  # fmt: skip
def test_a_repository_the_hub_does_not_have_is_bad_input(monkeypatch, online, no_sockets, tmp_path, capsys, status,
                                                         gated, said):  # fmt: skip
    """hf://someone/SatCLIP-typo (a 404 from the hub) exited 1 with advice to download the model elsewhere."""
    refusal = _not_found(status, gated)
    FakeHub(monkeypatch, probe_error=refusal)

    def list_repo_files(repo_id, **kwargs):
        raise refusal

    monkeypatch.setattr(pytest.importorskip("huggingface_hub"), "list_repo_files", list_repo_files)
    with pytest.raises(BadInputError, match=re.escape(said)):
        satclip.load("hf://someone/SatCLIP-typo")
    with pytest.raises(BadInputError, match="someone/SatCLIP-typo"):  # (fetch: the check's answer)
        hub.fetch("someone/SatCLIP-typo", "model.ckpt")
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n1,2\n")
    assert main(["embed", str(points), "-o", str(tmp_path / "x.parquet"), "--model", "hf://someone/SatCLIP-typo"]) == 2
    assert said in capsys.readouterr().err


def test_a_refused_repository_in_the_hub_cache_still_loads(monkeypatch, online, no_sockets, points):
    """A 404 is bad input only where the cache cannot serve the file (a released model cached before it moved)."""
    FakeHub(monkeypatch, cached={RELEASED_L10: require(CKPT_L10)}, probe_error=_not_found(404))
    assert torch.equal(satclip.load("satclip-resnet18-l10").encode(points), satclip.load(CKPT_L10).encode(points))


def test_unknown_source_lists_known_names(tmp_path, capsys):
    """An unknown name and a directory that holds no model were builtins' FileNotFoundError alone: ``except
    SatclipError`` missed them. They are satclip's bad input now (exit 2), and FileNotFoundErrors as before."""
    with pytest.raises(FileNotFoundError, match="satclip-resnet18-l10") as err:
        satclip.load("no-such-model")
    assert isinstance(err.value, UnknownNameError) and isinstance(err.value, KeyError)
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "empty", str(tmp_path / "empty"), str(tmp_path / "missing.ckpt")):
        with pytest.raises(FileNotFoundError, match="not a satclip model|no such model file") as err:
            satclip.load(source)
        assert isinstance(err.value, BadInputError)
    (tmp_path / "p.csv").write_text("lon,lat\n0,0\n")
    assert main(["embed", str(tmp_path / "p.csv"), "-o", str(tmp_path / "e.npy"), "--model", "bluemarbl-l10"]) == 2
    assert "no model 'bluemarbl-l10' (did you mean 'bluemarble-l10'" in capsys.readouterr().err


def test_a_model_name_is_read_without_case_or_surrounding_spaces(points):
    """"BlueMarble-L10" and "bluemarble-l10 " were "no model …" though they name a known model."""
    expected = satclip.load("bluemarble-l10").encode(points)
    from satclip.models.location_encoder import absolute_if_local
    from satclip.pretrained import recorded_name

    for name in ("BlueMarble-L10", "bluemarble-l10 ", " BLUEMARBLE-L10"):
        assert torch.equal(satclip.load(name).encode(points), expected)
        # recorded, and its retrieval database found, under the model's own name, not as typed
        assert recorded_name(name) == absolute_if_local(name) == "bluemarble-l10"
    from satclip.retrieval.auto import shipped_name

    assert shipped_name("BlueMarble-L40") == "bluemarble-l40"
    from satclip.eval.encoders.retrieval import model_spec

    assert model_spec("BlueMarble-L10+range+(beta=0.5)")[2].startswith("bluemarble-l10+range+(beta=0.5,")


def test_a_missing_file_named_as_a_known_model_names_it(tmp_path, monkeypatch):
    """``satclip-resnet18-l10.ckpt``, missing, said "no such model file" alone, though the name without its ending
    loads that release."""
    monkeypatch.chdir(tmp_path)
    for source in ("satclip-resnet18-l10.ckpt", "runs/bluemarble-l10.PT", "runs/satclip-vit16-l40"):
        name = source.rsplit("/", 1)[-1].partition(".")[0]
        with pytest.raises(FileNotFoundError, match="no such model file") as err:
            satclip.load(source)
        assert f"{name} is the name of a known model: give '{name}'" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        satclip.load("my-model.ckpt")
    assert "known model" not in str(err.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        satclip.load(path)


def test_invalid_points_are_named():
    encoder = satclip.load(require(CKPT_L10))
    with pytest.raises(ValueError, match=r"row 1: \(lon=10.0, lat=95.0\).*swapped"):
        encoder.encode([[0.0, 0.0], [10.0, 95.0], [20.0, 120.0]])
    with pytest.raises(ValueError, match=r"row 1: \(lon=10.0, lat=95.0\)") as err:  # one typo: no swap advice
        encoder.encode([[0.0, 0.0], [10.0, 95.0]])
    assert "swapped" not in str(err.value)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        encoder.encode([[0.0, 0.0, 1.0]])


def test_a_misspelt_model_name_gets_a_suggestion():
    with pytest.raises(FileNotFoundError, match=r"no model 'bluemarble-l1' \(did you mean 'bluemarble-l10'"):
        satclip.load("bluemarble-l1")
    with pytest.raises(FileNotFoundError) as err:
        satclip.load("qqqq")
    assert "did you mean" not in str(err.value)


def test_load_arguments_of_the_wrong_kind_are_named():
    """satclip.load(retrieval=True) failed in os.fspath with a TypeError; load_model(dtype="float32"), a name as
    load takes it, in torch's Module.to."""
    from satclip.errors import BadInputError

    with pytest.raises(BadInputError, match=r"retrieval=True: pass 'auto'"):
        satclip.load("bluemarble-l10", retrieval=True)
    model = satclip.load_model("bluemarble-l10", dtype="float64")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with pytest.raises(BadInputError, match="dtype='auto'"):
        satclip.load_model("bluemarble-l10", dtype="auto")


def test_a_16_bit_load_model_keeps_the_location_encoder_in_float32():
    """load_model(dtype="bf16") cast the location network too: model.location.encode and locate failed saying
    "call .float() first" (a call the user never made), and encode_location ran in bf16 (0.024 off)."""
    from satclip.models.locate import locate

    ckpt = require(CKPT_L10)
    points = torch.tensor([[13.4, 52.5], [-70.0, -33.0], [151.2, -33.9]])
    expected = satclip.load(ckpt, precision="float32").encode(points)
    images = torch.rand(1, 13, 64, 64, generator=torch.Generator().manual_seed(0))
    for dtype, image_dtype in (("bf16", torch.bfloat16), (torch.float16, torch.float16), ("float16", torch.float16),
                               ("bfloat16", torch.bfloat16)):  # ('float16' was refused while torch.float16 loaded)
        model = satclip.load_model(ckpt, dtype=dtype)
        assert {p.dtype for p in model.visual.parameters()} == {image_dtype}
        assert {p.dtype for p in model.location.parameters()} == {torch.float32} == {model.logit_scale.dtype}
        torch.testing.assert_close(model.location.encode(points), expected, rtol=0, atol=0)
        torch.testing.assert_close(model.encode_location(points), expected, rtol=0, atol=1e-5)
        assert locate(model, images, k=2, grid_size=50).lonlat.shape == (1, 2, 2)


def test_a_directory_of_checkpoints_names_them(tmp_path):
    """satclip.load of a directory holding a .ckpt said "no config.json + model.safetensors", not naming it."""
    source = require(CKPT_L10)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.ckpt").write_bytes(source.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"holds 1 of them \(m\.ckpt\): pass .*/models/m\.ckpt$"):
        satclip.load(tmp_path / "models")


def test_a_location_encoder_saves_as_it_is_and_loads_back_the_same(tmp_path):
    """A fine-tuned encoder from satclip.load had no .save; the usual torch.save(state_dict) loads back as a
    torchgeo file on the exact basis (0.047 off a released L = 40 model near the poles)."""
    from satclip.errors import OutputExistsError

    source = require(REFERENCE / "satclip-resnet18-l40.ckpt")
    encoder = satclip.load(source, precision="float64")
    with torch.no_grad():
        encoder.nnet.last_layer.bias.add_(0.25)  # (fine-tuned)
    written = encoder.save(tmp_path / "tuned")
    assert written.target == "native" and written.readers[0].tolerance == 0.0
    back = satclip.load(tmp_path / "tuned", precision="float64")
    assert back.posenc.harmonics_calculation == encoder.posenc.harmonics_calculation == "analytic"
    points = np.column_stack([np.linspace(-180, 180, 500), np.linspace(-90, 90, 500)])
    torch.testing.assert_close(back.encode(points), encoder.encode(points), rtol=0, atol=0)
    with pytest.raises(OutputExistsError):
        encoder.save(tmp_path / "tuned")
    assert encoder.save(tmp_path / "tuned", overwrite=True).path == tmp_path / "tuned"


def test_overwrite_that_is_not_true_or_false_replaces_nothing(tmp_path):
    """encoder.save(path, overwrite="no") replaced the model there ("no" is true); every writer checks its
    overwrite where it checks its output (safe_output.check_output)."""
    from satclip.errors import BadInputError

    encoder = satclip.load("bluemarble-l10")
    encoder.save(tmp_path / "kept")
    before = (tmp_path / "kept" / "model.safetensors").stat().st_mtime_ns
    for value in ("no", None, 1):
        with pytest.raises(BadInputError, match=f"^overwrite must be True or False, got {re.escape(repr(value))}$"):
            encoder.save(tmp_path / "kept", overwrite=value)
    assert (tmp_path / "kept" / "model.safetensors").stat().st_mtime_ns == before
    assert encoder.save(tmp_path / "kept", overwrite=np.True_).path == tmp_path / "kept"


def test_device_none_is_the_default_and_python_errors_name_the_keywords():
    """satclip.load(device=None) was "None is not a torch device", where satclip.embed's default is None; a
    precision contradicting dtype named only --dtype and --precision to a Python caller."""
    from satclip.errors import BadInputError

    assert next(satclip.load("bluemarble-l10", device=None).parameters()).device.type == "cpu"
    with pytest.raises(BadInputError, match=r"^dtype float64 \(dtype=, --dtype\) contradicts precision float32 "
                                            r"\(precision=, --precision\)"):  # fmt: skip
        satclip.load("bluemarble-l10", precision="float32", dtype=torch.float64)


@pytest.mark.parametrize("target", ["native", "original"])
def test_metadata_json_cannot_store_is_refused_before_anything_is_written(tmp_path, target):
    """save(metadata={"a": object()}) failed with json's TypeError 13 frames deep in the writer."""
    from satclip.errors import BadInputError

    encoder = satclip.load("bluemarble-l10")
    output = tmp_path / ("m" if target == "native" else "m.ckpt")
    with pytest.raises(BadInputError, match=r"^metadata\['a'\] is of type object, which config\.json cannot hold"):
        encoder.save(output, metadata={"a": object()}, target=target)
    with pytest.raises(BadInputError, match=r"^metadata\['a'\]\['b'\]\[1\] is of type set"):
        encoder.save(output, metadata={"a": {"b": [1, {2}]}}, target=target)
    with pytest.raises(BadInputError, match=r"^metadata has the key \(1, 2\) of type tuple"):
        encoder.save(output, metadata={(1, 2): 3}, target=target)
    # 1 was written as "1" (it did not load back as given, and {1: …, "1": …} gave one key twice); NaN as no JSON
    with pytest.raises(BadInputError, match=r"^metadata has the key 1 of type int, .* give keys that are strings"):
        encoder.save(output, metadata={1: "x"}, target=target)
    with pytest.raises(BadInputError, match=r"^metadata\['a'\] is nan, which JSON cannot hold"):
        encoder.save(output, metadata={"a": float("nan")}, target=target)
    assert list(tmp_path.iterdir()) == []
    encoder.save(output, metadata={"a": [1, 2.5, None, True, "x", {"b": 1}]}, target=target)


def test_the_gradient_path_says_what_it_takes_and_encode_says_it_has_none():
    """encoder(array) failed deep in torch ("'numpy.ndarray' object has no attribute 'is_floating_point'"), and
    encode() of a tensor that requires grad returned one without, without a word."""
    from satclip.errors import BadInputError

    encoder = satclip.load("bluemarble-l10")
    with pytest.raises(BadInputError, match=r"LocationEncoder\(lonlat\) takes a torch tensor .* not a ndarray: pass "
                                            r"torch\.as_tensor\(points\), or use \.encode\(points\)"):  # fmt: skip
        encoder(np.array([[13.4, 52.5]]))
    points = torch.tensor([[13.4, 52.5]], requires_grad=True)
    with pytest.warns(UserWarning, match=r"compute no gradients .* call the encoder itself") as said:
        assert not encoder.encode(points).requires_grad
    assert said[0].filename == __file__  # (the caller's line: it named torch/utils/_contextlib.py)
    encoder(points).sum().backward()  # (the path for gradients)
    assert points.grad is not None and torch.isfinite(points.grad).all()


def test_precision_follows_the_weights_dtype():
    """After .double() the encoder's precision still said "float32" while encode gave float64."""
    encoder = satclip.load("bluemarble-l10", precision="float32")
    encoder.double()
    assert encoder.precision == "float64" and encoder.encode([[13.4, 52.5]]).dtype == torch.float64
    encoder.float()
    assert encoder.precision == "float32" and encoder.encode([[13.4, 52.5]]).dtype == torch.float32


def test_bad_points_are_satclips_bad_input_errors():
    """Invalid points and arrays of the wrong shape were plain ValueErrors (InvalidPointsError too), missed by
    `except satclip.errors.SatclipError`; they are BadInputErrors, still ValueErrors."""
    from satclip.encoding.points import InvalidPointsError
    from satclip.errors import BadInputError, SatclipError

    encoder = satclip.load("bluemarble-l10")
    for points in ([[200.0, 0.0]], np.zeros((3, 3)), [[1.0, "x"]], None):
        with pytest.raises(BadInputError) as caught:
            encoder.encode(points)
        assert isinstance(caught.value, (SatclipError, ValueError))
    assert issubclass(InvalidPointsError, BadInputError)


def test_the_subpackages_are_reached_from_the_package():
    """satclip.train, satclip.image … raised AttributeError until imported by name, and dir(satclip) listed
    internals (_LAZY, _Package, importlib, sys)."""
    import subprocess
    import sys

    code = ("import satclip; names = dir(satclip); "
            "assert not [n for n in names if n.startswith('_') and n != '__version__'], names; "
            "assert callable(satclip.train.fit) and satclip.image.__name__ == 'satclip.image'; "
            "assert satclip.eval.run_evaluation and satclip.retrieval and satclip.io and satclip.data; "
            "print('ok')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_repr_says_what_the_encoder_is():
    """repr(encoder) showed "SirenLayer()" for every layer, and neither the embedding's width, the precision nor
    the source."""
    text = repr(satclip.load("bluemarble-l10", precision="float32"))
    assert "embedding_dim=256, precision='float32', source='bluemarble-l10'" in text, text
    assert "SirenLayer(in_features=100, out_features=512, bias=True, sine, w0=30, dropout=0.5)" in text, text
    assert "SirenLayer(in_features=512, out_features=256, bias=True, linear)" in text, text


def test_a_trusted_checkpoint_with_namespace_hyper_parameters_loads(tmp_path):
    """Older Lightning saved hyper-parameters as an argparse.Namespace: refused by default (unpickling it needs
    trust), and with trust_checkpoint=True it was refused anyway ("'hyper_parameters' must be a dict")."""
    import argparse

    from satclip.io.safe_pickle import UntrustedCheckpointError

    source = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"] = argparse.Namespace(**checkpoint["hyper_parameters"])
    older = tmp_path / "older.ckpt"
    torch.save(checkpoint, older)
    with pytest.raises(UntrustedCheckpointError, match="argparse.Namespace"):
        satclip.load(older)
    points = np.array([[13.4, 52.5], [-58.4, -34.6]])
    loaded = satclip.load(older, trust_checkpoint=True, precision="float64")
    torch.testing.assert_close(loaded.encode(points), satclip.load(source, precision="float64").encode(points),
                               rtol=0, atol=0)  # fmt: skip


def test_python_callers_are_told_python_arguments(tmp_path):
    """`satclip.load(…, harmonics_calculation="foo")` said the shipped model's config was invalid ("…/bluemarble-l10:
    location_encoder.encoding is invalid"), the fault being the argument; `encoder.save` over an existing output
    said only "pass --overwrite", a flag of the CLI."""
    with pytest.raises(BadInputError, match=r"^harmonics_calculation='foo' is not one of \['analytic'"):
        satclip.load("bluemarble-l10", harmonics_calculation="foo")
    encoder = satclip.load("bluemarble-l10")
    encoder.save(tmp_path / "saved")
    with pytest.raises(OutputExistsError, match=r"pass --overwrite \(overwrite=True in Python\) to replace it"):
        encoder.save(tmp_path / "saved")


def test_the_package_docstring_example_runs_offline():
    """`help(satclip)`'s example loaded a released checkpoint, which fails offline at once; it loads the shipped
    model now, and runs as written."""
    import doctest

    assert doctest.testmod(satclip, verbose=False).failed == 0


def test_the_gradient_path_refuses_points_out_of_range():
    """`encoder(lonlat)`, the path for gradients, embedded lat 95 or NaN without a word (encode refuses them); an
    optimisation that walked a point past a pole got an embedding of nowhere."""
    from satclip.encoding.points import InvalidPointsError

    encoder = satclip.load("bluemarble-l10", precision="float32")
    points = torch.tensor([[13.4, 52.5], [10.0, 95.0]], requires_grad=True)
    with pytest.raises(InvalidPointsError, match=r"1 invalid point\(s\): row 1: \(lon=10\.0, lat=95\.0\)"):
        encoder(points)
    encoder(points[:1]).sum().backward()  # (in range: gradients flow)
    assert points.grad is not None


@pytest.mark.parametrize("shape", [(4, 3), (2,), (4, 3, 2), (3, 1)])
def test_the_gradient_path_refuses_other_shapes_as_encode_does(shape):
    """`encoder(lonlat)` of shape (N, 3) embedded the first two columns without a word, and (2,) or (4, 3, 2)
    failed deep in the encoding (IndexError, RuntimeError) instead of naming the shape as encode does."""
    from satclip.errors import BadInputError

    encoder = satclip.load("bluemarble-l10", precision="float32")
    points = torch.zeros(shape)
    with pytest.raises(BadInputError) as said:
        encoder.encode(points)
    with pytest.raises(BadInputError, match=r"^points must have shape \(N, 2\) as \(lon, lat\) in degrees, got "
                                            rf"shape {re.escape(str(shape))}") as forward:  # fmt: skip
        encoder(points)
    assert str(forward.value) == str(said.value)
    encoder.train()  # (in training mode too: a shape check reads no values)
    with pytest.raises(BadInputError, match=r"must have shape \(N, 2\)"):
        encoder(points)


@pytest.mark.parametrize("source", ["bluemarble-l10", "ckpt"])
def test_loading_leaves_the_random_state_as_it_was(source):
    """Loading built random weights first and overwrote them: the caller's seeded draws changed."""
    if source == "ckpt":
        require(CKPT_L10)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    encoder = satclip.load(str(CKPT_L10) if source == "ckpt" else source, precision="float32")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.isfinite(p).all() for p in encoder.parameters())


@pytest.mark.parametrize("source", ["bluemarble-l10", "ckpt"])
def test_loading_a_whole_model_leaves_the_random_state_as_it_was(source):
    """satclip.load_model built the image encoder with random initial weights, then overwrote them: the caller's
    seeded draws changed (satclip.load no longer did)."""
    if source == "ckpt":
        require(CKPT_L10)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    model = satclip.load_model(str(CKPT_L10) if source == "ckpt" else source)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.isfinite(p).all() for p in model.parameters())
