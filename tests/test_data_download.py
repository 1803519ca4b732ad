"""`satclip data download` against fake hub sources: resuming, checksums, atomic extraction, offline."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from satclip.cli import main
from satclip.data import download as dl
from satclip.data.download import ChecksumError, DamagedCopyError, DamagedFileError, download_s2100k
from satclip.data.sources import HubSource, LocalSource, RemoteFile
from satclip.errors import BadInputError, OutputExistsError
from satclip.io.hub import DownloadError

from .conftest import S2_EXAMPLES, require

ALL_IMAGES = ["patch_0.tif", "patch_1.tif", "patch_2.tif"]
INDEX = b"fn,lon,lat\npatch_0.tif,10.5,20.25\npatch_1.tif,-3.0,45.0\npatch_2.tif,100.0,-10.0\n"


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeHub:
    """A dataset repository in memory; ``fetch`` writes where hf_hub_download would (directory/path)."""

    def __init__(self, files: dict[str, bytes], published: dict[str, str | None] | None = None):
        self.files = dict(files)
        self.published = published if published is not None else {p: _sha256(d) for p, d in files.items()}
        self.served = dict(files)  # what fetch returns; tests may tamper with it
        self.fail_once: set[str] = set()
        self.calls: list[str] = []
        self.description = "fake://s2-100k"

    def list_files(self):
        return [RemoteFile(p, len(d), self.published.get(p)) for p, d in self.files.items()]

    def fetch(self, file, directory):
        self.calls.append(file.path)
        target = directory / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.served[file.path]
        if file.path in self.fail_once:
            self.fail_once.discard(file.path)
            target.write_bytes(data[: len(data) // 3])  # a partial download, then the connection drops
            raise ConnectionError("connection reset by peer")
        target.write_bytes(data)
        return target


def _shards() -> dict[str, bytes]:
    return {
        "index.csv": INDEX,
        "data/shard-000.tar": _tar({"images/patch_0.tif": b"A" * 100, "README": b"not an image"}),
        "data/shard-001.tar": _tar({"patch_1.tif": b"B" * 100}),
        "data/shard-002.tar": _tar({"./x/patch_2.tif": b"C" * 100}),
    }


def test_download_extracts_every_shard(tmp_path):
    hub = FakeHub(_shards())
    summary = download_s2100k(tmp_path, hub)
    assert (tmp_path / "index.csv").read_bytes() == INDEX
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ALL_IMAGES
    assert (tmp_path / "images" / "patch_2.tif").read_bytes() == b"C" * 100
    assert summary.images == 3 and len(summary.extracted) == 4
    assert not list((tmp_path / dl.STATE_DIR / "files").rglob("*.tar"))  # archives deleted after extraction


def test_download_resumes_after_an_interrupted_shard(tmp_path):
    hub = FakeHub(_shards())
    hub.fail_once.add("data/shard-001.tar")
    with pytest.raises(DownloadError, match="shard-001.tar.*rerun"):
        download_s2100k(tmp_path, hub)
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["patch_0.tif"]
    assert hub.calls == ["index.csv", "data/shard-000.tar", "data/shard-001.tar"]

    hub.calls.clear()
    summary = download_s2100k(tmp_path, hub)
    assert hub.calls == ["data/shard-001.tar", "data/shard-002.tar"]  # done shards are not fetched again
    assert set(summary.skipped) == {"index.csv", "data/shard-000.tar"}
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ALL_IMAGES
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"B" * 100

    hub.calls.clear()
    assert download_s2100k(tmp_path, hub).extracted == ()
    assert hub.calls == []


def test_a_shard_whose_images_were_removed_is_fetched_again(tmp_path, caplog):
    """The shards' markers were trusted: with images deleted since, a rerun fetched nothing ("3 already
    done") and verify then reported them missing, with no way back but deleting satclip's state by hand."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    (tmp_path / "images" / "patch_1.tif").unlink()
    hub.calls.clear()
    summary = download_s2100k(tmp_path, hub)
    assert hub.calls == ["data/shard-001.tar"] and summary.images == 1
    assert "data/shard-001.tar: 1 of its 1 images are missing" in caplog.text
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ALL_IMAGES


def test_an_image_of_other_bytes_in_the_images_place_is_kept_and_named(tmp_path, capsys):
    """A file of the user's (or a damaged image) named as a member of a shard was kept as "already there", the
    shard marked done and the dataset said complete, with the wrong image in it. It is still kept, and the
    download now stops naming it, the shard not done; an identical file is taken as the image."""
    hub = FakeHub(_shards())
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "patch_0.tif").write_bytes(b"A" * 100)  # the same bytes: a run stopped before
    (tmp_path / "images" / "patch_1.tif").write_bytes(b"mine")
    with pytest.raises(OutputExistsError) as raised:
        download_s2100k(tmp_path, hub)
    assert str(raised.value) == (
        f"{tmp_path / 'images' / 'patch_1.tif'} is not the image patch_1.tif of shard-001.tar (other bytes: a file "
        "of yours, or one changed since it was extracted); satclip never replaces it: move it away and rerun"
    )
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"mine"
    (tmp_path / "images" / "patch_1.tif").rename(tmp_path / "mine.tif")
    hub.calls.clear()
    summary = download_s2100k(tmp_path, hub)
    assert hub.calls == ["data/shard-001.tar", "data/shard-002.tar"]  # shard-001 was not marked done
    assert summary.images == 2
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"B" * 100


def test_a_local_copy_without_checksums_is_not_said_to_be_size_checked(tmp_path, caplog):
    """--from DIR without checksums warned "only its size was checked": against the file's own size."""
    from satclip.data.sources import LocalSource

    (tmp_path / "copy" / "data").mkdir(parents=True)
    for name, data in _shards().items():
        (tmp_path / "copy" / name).write_bytes(data)
    download_s2100k(tmp_path / "root", LocalSource(tmp_path / "copy"))
    assert "sizes are checked" not in caplog.text and "publishes no checksum for 4 of the 4 file(s)" in caplog.text


def test_bad_checksum_is_rejected(tmp_path):
    hub = FakeHub(_shards())
    hub.served["data/shard-001.tar"] = _tar({"patch_1.tif": b"X" * 100})  # same size, other content
    with pytest.raises(DamagedFileError, match="shard-001.tar: sha256 .*: the download was damaged and is deleted; "
                                            "rerun the same command"):  # (it said neither)  # fmt: skip
        download_s2100k(tmp_path, hub)
    assert not (tmp_path / "images" / "patch_1.tif").exists()
    assert not (tmp_path / dl.STATE_DIR / "files" / "data" / "shard-001.tar").exists()  # bad file removed
    assert not dl._marker(tmp_path, RemoteFile("data/shard-001.tar")).exists()
    hub.served["data/shard-001.tar"] = hub.files["data/shard-001.tar"]  # the mirror is fixed
    download_s2100k(tmp_path, hub)
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"B" * 100


def test_a_damaged_file_of_a_local_copy_is_named_and_kept(tmp_path):
    """A local copy's shard with another sha256 was "data/shard-001.tar: sha256 …, expected …", naming neither
    the file read nor what to do; the user's copy is never deleted."""
    files = _shards()
    (tmp_path / "copy" / "data").mkdir(parents=True)
    for name, data in files.items():
        (tmp_path / "copy" / name).write_bytes(data)
    listed = [RemoteFile(name, len(data), sha256=_sha256(data)) for name, data in files.items()]
    source = LocalSource(tmp_path / "copy")
    source.list_files = lambda: listed
    damaged = tmp_path / "copy" / "data" / "shard-001.tar"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"?")
    with pytest.raises(DamagedCopyError, match=rf"in {re.escape(str(damaged))}: the copy is damaged or another "
                                               "version; replace it with an intact copy"):  # fmt: skip
        download_s2100k(tmp_path / "root", source)
    assert damaged.exists()


def test_wrong_size_and_git_blob_checksums(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    blob_id = subprocess.run(["git", "hash-object", "--stdin"], input=INDEX, capture_output=True, check=True)
    good = RemoteFile("index.csv", len(INDEX), git_sha1=blob_id.stdout.decode().strip())
    path = tmp_path / "index.csv"
    path.write_bytes(INDEX)
    assert dl.verify_checksum(path, good).startswith("git blob")
    path.write_bytes(INDEX.replace(b"10.5", b"10.6"))
    with pytest.raises(ChecksumError, match="git blob id"):
        dl.verify_checksum(path, good)
    path.write_bytes(INDEX[:-1])
    with pytest.raises(ChecksumError, match="expected 116"):
        dl.verify_checksum(path, RemoteFile("index.csv", 116))


def test_broken_archive_leaves_no_partial_images(tmp_path):
    files = _shards()
    whole = _tar({"patch_1.tif": b"B" * 5000, "patch_9.tif": b"D" * 5000})
    files["data/shard-001.tar"] = whole[:8000]  # cut inside the second member's data
    hub = FakeHub(files, published={})  # no checksums published: the damage shows only when extracting
    with pytest.raises(DownloadError, match="cannot extract.*rerun the same command to fetch it again"):
        download_s2100k(tmp_path, hub)
    # no hidden leftovers, and the intact shard after it is extracted
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["patch_0.tif", "patch_2.tif"]
    # the damaged download is deleted: kept, the hub client found it complete and the rerun failed the same way
    assert not (tmp_path / dl.STATE_DIR / "files" / "data" / "shard-001.tar").exists()
    hub.files["data/shard-001.tar"] = hub.served["data/shard-001.tar"] = whole  # the mirror is fixed
    download_s2100k(tmp_path, hub)
    assert (tmp_path / "images" / "patch_9.tif").read_bytes() == b"D" * 5000


def _four_shards(damage: dict[str, str]) -> dict[str, bytes]:
    """index.csv and data/shard-00..03 (one image each; .tar, or .tar.gz where ``damage`` says "gz"), those named in
    ``damage`` cut short, as a copy interrupted or a disk error leaves them."""
    index = b"fn,lon,lat\n" + b"".join(b"patch_%d.tif,%d.0,1.0\n" % (i, i) for i in range(4))
    files = {"index.csv": index}
    for i in range(4):
        name = f"data/shard-0{i}.tar"
        tar = _tar({f"patch_{i}.tif": bytes([65 + i]) * 5000})
        if damage.get(name) == "gz":
            name, tar = name + ".gz", gzip.compress(tar)
        files[name] = tar[: len(tar) // 2] if name.removesuffix(".gz") in damage else tar
    return files


def test_damaged_shards_of_a_local_copy_are_named_and_the_others_extracted(tmp_path, capsys):
    """`data download dt --from copy2` with copy2/data/shard-02.tar truncated stopped there (exit 2): the intact
    shard-03 was never extracted, and a second damaged shard was found only by the next run. Every damaged shard
    is named now, once, after the others are extracted, and the rerun with intact copies extracts only those."""
    copy = _local_copy(tmp_path / "copy2", _four_shards({"data/shard-01.tar": "gz", "data/shard-02.tar": "tar"}))
    root = tmp_path / "dt"
    assert main(["data", "download", str(root), "--from", str(copy)]) == 2
    err = capsys.readouterr().err
    line = _error_line(err)
    assert line.startswith(f"satclip: error: cannot extract {copy / 'data' / 'shard-01.tar.gz'}: not a readable tar "
                           "archive (")  # fmt: skip
    assert f"; cannot extract {copy / 'data' / 'shard-02.tar'}: not a readable tar archive (" in line
    assert line.endswith(
        "; replace them with intact copies of data/shard-01.tar.gz, data/shard-02.tar and rerun the same command "
        f"(the other 2 archives are done: the rerun redoes only them) (the work done so far is kept in {root})"
    )
    assert "data/shard-01.tar.gz is damaged and is not extracted" in err and "data/shard-02.tar is damaged" in err
    assert sorted(p.name for p in (root / "images").iterdir()) == ["patch_0.tif", "patch_3.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy2", "dt"]  # the copy is never changed

    whole = _four_shards({})  # intact copies put in place of the damaged ones, the others left as they are
    (copy / "data" / "shard-01.tar.gz").write_bytes(gzip.compress(whole["data/shard-01.tar"]))
    (copy / "data" / "shard-02.tar").write_bytes(whole["data/shard-02.tar"])
    assert main(["data", "download", str(root), "--from", str(copy)]) == 0
    assert "2 file(s) read from the local copy, 3 already done, 2 images extracted" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"patch_{i}.tif" for i in range(4)]


def test_damaged_downloads_are_named_deleted_and_fetched_again_alone(tmp_path):
    """The hub's shards, the same rule: a shard that fails its checksum and one that is no readable tar are
    deleted and named at the end, the intact ones extracted; the rerun fetches only those two."""
    files = _four_shards({})
    hub = FakeHub(files, published={"data/shard-01.tar": _sha256(files["data/shard-01.tar"])})
    hub.served["data/shard-01.tar"] = files["data/shard-01.tar"][:-1] + b"?"  # fails its checksum
    hub.files["data/shard-02.tar"] = hub.served["data/shard-02.tar"] = files["data/shard-02.tar"][:3000]
    with pytest.raises(DamagedFileError) as raised:
        download_s2100k(tmp_path, hub)
    said = str(raised.value)
    assert said.startswith(f"data/shard-01.tar: sha256 {_sha256(hub.served['data/shard-01.tar'])}, expected "
                           f"{_sha256(files['data/shard-01.tar'])}; cannot extract "
                           f"{tmp_path / dl.STATE_DIR / 'files' / 'data' / 'shard-02.tar'}: not a readable tar archive")
    assert said.endswith(": the downloads were damaged and are deleted; rerun the same command to fetch them again "
                         "(the other 2 archives are done: the rerun redoes only them)")  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["patch_0.tif", "patch_3.tif"]
    assert not list((tmp_path / dl.STATE_DIR / "files").rglob("*.tar"))
    hub.files, hub.served = dict(files), dict(files)  # the hub serves them whole again
    hub.calls.clear()
    summary = download_s2100k(tmp_path, hub)
    assert hub.calls == ["data/shard-01.tar", "data/shard-02.tar"] and summary.images == 2
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"patch_{i}.tif" for i in range(4)]


def test_members_cannot_escape_the_images_folder(tmp_path):
    index = b"fn,lon,lat\nevil.tif,1.0,2.0\npatch_0.tif,3.0,4.0\n"
    files = {"index.csv": index, "evil.tar": _tar({"../../evil.tif": b"E" * 10, "/abs/patch_0.tif": b"A"})}
    download_s2100k(tmp_path / "root", FakeHub(files))
    assert sorted(p.name for p in (tmp_path / "root" / "images").iterdir()) == ["evil.tif", "patch_0.tif"]
    assert not (tmp_path / "evil.tif").exists()


def test_repository_without_archives_is_described(tmp_path, capsys):
    with pytest.raises(DownloadError, match="does not look like S2-100K.*README.md"):
        download_s2100k(tmp_path, FakeHub({"README.md": b"hi", "index.csv": INDEX}))
    # a local copy that is no S2-100K is bad input (exit 2), not a failed download (exit 1)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "README.md").write_text("hi")
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(tmp_path / "copy")]) == 2
    assert "does not look like S2-100K" in capsys.readouterr().err


def test_hub_source_reads_lfs_checksums(tmp_path, monkeypatch):
    """HubSource against huggingface_hub's own RepoFile objects, with the transport faked."""
    hf_api = pytest.importorskip("huggingface_hub.hf_api")
    import huggingface_hub

    files = _shards()
    entries = [hf_api.RepoFolder(path="data", oid="0" * 40)]
    for path, data in files.items():
        lfs = None if path == "index.csv" else {"size": len(data), "oid": _sha256(data), "pointerSize": 130}
        blob = subprocess_free_git_blob_id(data) if lfs is None else "f" * 40
        entries.append(hf_api.RepoFile(path=path, size=len(data), oid=blob, lfs=lfs))
    served = dict(files)
    served["data/shard-002.tar"] = _tar({"patch_2.tif": b"Z" * 100})

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", lambda self, *a, **k: iter(entries))
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # the hub answers

    def fake_download(repo_id, filename, *, local_dir, **kwargs):
        assert repo_id == "torchgeo/s2-100k" and kwargs["repo_type"] == "dataset"
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(served[filename])
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    listed = {f.path: f for f in HubSource().list_files()}
    assert set(listed) == set(files)
    assert listed["data/shard-000.tar"].sha256 == _sha256(files["data/shard-000.tar"])
    assert listed["index.csv"].git_sha1 and listed["index.csv"].sha256 is None
    with pytest.raises(DamagedFileError, match="shard-002"):
        download_s2100k(tmp_path, HubSource())
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["patch_0.tif", "patch_1.tif"]


def test_an_unreachable_hub_fails_at_once_without_the_clients_retries(monkeypatch):
    """Listing the repository retried a failed connection for ~25 s; one probe request decides instead."""
    import huggingface_hub

    def unreachable(url, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    def listing(self, *args, **kwargs):
        raise AssertionError("listed although the hub cannot be reached")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", listing)
    with pytest.raises(DownloadError, match=r"cannot list .*s2-100k.*Name or service not known"):
        HubSource().list_files()


def _no_network(monkeypatch) -> None:
    """Any request to the hub, or any connection, fails the test."""
    import socket

    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("a request was made")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_tree", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)


def test_a_local_path_given_as_repo_is_never_sent_to_the_hub(tmp_path, monkeypatch, capsys):
    """`--repo myrepos/s2`, an existing directory, was asked of the hub ("cannot list https://huggingface.co/
    datasets/myrepos/s2"), and `--repo ./repo` met the hub client's own error, naming neither --repo nor --from."""
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myrepos" / "s2").mkdir(parents=True)
    (tmp_path / "notes").write_text("mine")
    for repo, said in [
        ("myrepos/s2", "--repo myrepos/s2 is a local directory, not a Hugging Face dataset repository; satclip sends "
                       "no local path to the hub: for a local copy of the repository use --from myrepos/s2"),
        ("./repo", "--repo './repo' is not a Hugging Face dataset repository id (owner/name, of letters, digits, '.', "
                   "'_' and '-'); for a local copy of the repository use --from DIR"),
        ("notes", "--repo 'notes' is not a Hugging Face dataset repository id"),
    ]:
        assert main(["data", "download", "dlR", "--repo", repo]) == 2
        assert _error_line(capsys.readouterr().err).startswith(f"satclip: error: {said}"), repo
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myrepos", "notes"]


def test_a_local_path_given_as_revision_is_never_sent_to_the_hub(tmp_path, monkeypatch, capsys):
    """`--revision /tmp/x/localrepo` (or `./localrepo`), given for --from, was asked of the hub as a branch
    (https://huggingface.co/datasets/torchgeo/s2-100k/tree//tmp/x/localrepo); names git takes stay revisions, also
    where a folder of that name is here."""
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "localrepo").mkdir()
    (tmp_path / "main").mkdir()  # a folder named as a branch: `--revision main` is still the branch
    (tmp_path / "notes" / "v1").mkdir(parents=True)
    (tmp_path / "notes" / "v2").write_text("mine")
    for revision, kind in [(str(tmp_path / "localrepo"), "a local directory"), ("./localrepo", "a local directory"),
                           ("../elsewhere", "a local path"), ("~/copy", "a local path"),
                           ("notes/v1", "a local directory"), ("notes/v2", "a local file")]:  # fmt: skip
        assert main(["data", "download", "dlR", "--revision", revision]) == 2, revision
        assert _error_line(capsys.readouterr().err) == (
            f"satclip: error: --revision {revision} is {kind}, not a revision (branch, tag or commit) of the Hugging "
            f"Face repository; satclip sends no local path to the hub: for a local copy of the repository use --from "
            f"{shlex.quote(revision)}"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["localrepo", "main", "notes"]
    for revision in ["main", "refs/pr/1", "v1.0", "fbdbb78ba57d22d5b6be203913f1e6020c2b4e0a"]:
        assert HubSource(revision=revision).description.endswith(f"/tree/{revision}")


def subprocess_free_git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_offline_download_says_what_to_fetch(tmp_path, capsys):
    # conftest sets HF_HUB_OFFLINE=1
    assert main(["data", "download", str(tmp_path / "s2")]) == 1
    err = capsys.readouterr().err
    assert "https://huggingface.co/datasets/torchgeo/s2-100k" in err
    assert f"satclip data download {tmp_path / 's2'} --from DIR" in err
    assert "; To download" not in err and "). To download S2-100K elsewhere" in err  # (a newline read "; To")
    assert ".)." not in err, err  # (the hub client's full stop inside the parenthesis: "…variable.). To download")
    # what to fetch is the repository and revision asked for (it said torchgeo/s2-100k at main)
    assert main(["data", "download", str(tmp_path / "s2"), "--repo", "me/mine", "--revision", "v1"]) == 1
    err = capsys.readouterr().err
    assert "fetch the dataset repository https://huggingface.co/datasets/me/mine/tree/v1 — " in err, err
    assert "torchgeo" not in err


def test_offline_download_fetches_the_revision_asked_for(tmp_path, capsys):
    """The commands offline said to run fetched the default branch, not --revision, and the `--from` run they
    suggested left out --revision, which enables the known checksums; values are shell-quoted."""
    root = tmp_path / "my data"
    assert main(["data", "download", str(root), "--repo", "me/mine", "--revision", "v1"]) == 1
    err = capsys.readouterr().err
    assert ("`git clone --no-checkout https://huggingface.co/datasets/me/mine DIR && git -C DIR checkout v1` "
            "(git-lfs installed) or `hf download me/mine --repo-type dataset --revision v1 --local-dir DIR` "
            "(huggingface_hub older than 0.34: `huggingface-cli download`, the same arguments). Copy that folder to "
            f"this machine and run `satclip data download '{root}' --from DIR` (a git clone: `satclip data download "
            f"'{root}' --from DIR --revision \"$(git -C DIR rev-parse HEAD)\"`, so that the checksums satclip knows of "
            "that commit are checked)") in err, err  # fmt: skip
    assert main(["data", "download", str(tmp_path / "s2")]) == 1  # (no revision: the default branch)
    err = capsys.readouterr().err
    assert "`git clone https://huggingface.co/datasets/torchgeo/s2-100k DIR`" in err and "checkout" not in err
    # (a git clone's --from run was never told to pass its commit, which enables the checksums satclip knows)
    assert "--from DIR --revision \"$(git -C DIR rev-parse HEAD)\"`" in err


def test_cli_download_from_local_copy_then_verify(tmp_path, capsys):
    require(S2_EXAMPLES)
    pytest.importorskip("rasterio")
    mirror = tmp_path / "mirror"
    (mirror / "data").mkdir(parents=True)
    names = ["patch_75123.tif", "patch_70975.tif", "patch_502692.tif"]
    lines = (S2_EXAMPLES / "index.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    index = "fn,lon,lat\n" + "".join(f"{r[3]},{r[1]},{r[0]}\n" for r in rows if r[3] in names)
    (mirror / "index.csv").write_text(index)
    for shard, members in {"shard-000.tar": names[:2], "shard-001.tar": names[2:]}.items():
        with tarfile.open(mirror / "data" / shard, "w") as tar:
            for name in members:
                tar.add(S2_EXAMPLES / "images" / name, arcname=name)
    root = tmp_path / "s2"
    assert main(["data", "download", str(root), "--from", str(mirror)]) == 0
    assert "3 file(s) read from the local copy, 0 already done, 3 images extracted" in capsys.readouterr().out
    assert (mirror / "data" / "shard-000.tar").exists()  # a local copy is used in place, never deleted
    assert main(["data", "verify", str(root)]) == 0
    assert main(["data", "download", str(root), "--from", str(mirror)]) == 0
    assert "0 file(s) read from the local copy, 3 already done" in capsys.readouterr().out
    capsys.readouterr()
    # an extracted root given as the copy: said so (it listed 20 of its images as what it found, never index.csv)
    assert main(["data", "download", str(tmp_path / "x3"), "--from", str(root)]) == 2
    assert _error_line(capsys.readouterr().err) == (
        f"satclip: error: --from {root} is an S2-100K root already extracted (index.csv and images/), not a copy of "
        f"the hub repository: use it as data.root as it is; check it with `satclip data verify {root}`"
    )
    assert not (tmp_path / "x3").exists()


def test_local_source_rejects_lfs_pointers(tmp_path):
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "index.csv").write_bytes(INDEX)
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n"
    (tmp_path / "copy" / "satclip.tar").write_text(pointer)
    with pytest.raises(DownloadError, match="git lfs pull"):
        download_s2100k(tmp_path / "root", LocalSource(tmp_path / "copy"))


def test_missing_hub_extra_names_the_extra_and_the_offline_route(monkeypatch):
    import sys

    from satclip.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'satclip\[hub\]'.*--from DIR"):
        HubSource().list_files()


def _error_line(err: str) -> str:
    """The error line a failed command ends with (after the checksum warnings a local copy gets)."""
    line = err.strip().splitlines()[-1]
    assert line.startswith("satclip: error: ") and "unexpected error" not in line, err
    return line


def _local_copy(directory: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


def test_an_index_that_is_not_an_index_is_never_published(tmp_path, capsys):
    """A --from copy with random bytes as index.csv (and no tar as images.tar) published them as ROOT/index.csv
    before failing with "rerun to retry"; the rerun with a good copy kept them ("1 already done") and verify
    then failed with a bare "'utf-8' codec can't decode"."""
    root = tmp_path / "root"
    garbage = _local_copy(tmp_path / "garbage", {"index.csv": b"\xff\xfe\x00\x9c" * 64, "images.tar": b"no tar" * 99})
    assert main(["data", "download", str(root), "--from", str(garbage)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{garbage / 'index.csv'} is not UTF-8 text" in line
    assert not (root / "index.csv").exists()
    other = _local_copy(tmp_path / "other", {"index.csv": b"filename,x,y\npatch_0.tif,1,2\n", **_shards()})
    (other / "index.csv").write_bytes(b"filename,x,y\npatch_0.tif,1,2\n")  # columns of no index layout
    assert main(["data", "download", str(root), "--from", str(other)]) == 2
    assert "match no known index layout" in _error_line(capsys.readouterr().err)
    assert not (root / "index.csv").exists()
    good = _local_copy(tmp_path / "good", _shards())
    assert main(["data", "download", str(root), "--from", str(good)]) == 0
    assert "4 file(s) read from the local copy, 0 already done" in capsys.readouterr().out
    assert (root / "index.csv").read_bytes() == INDEX


def test_a_resume_checks_the_index_against_its_source_and_checksum(tmp_path):
    """The index's marker was trusted whatever the source and whatever became of ROOT/index.csv since."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    mirror = FakeHub(_shards())
    mirror.description = "fake://mirror"
    summary = download_s2100k(tmp_path, mirror)  # another source: its index is fetched and compared
    assert mirror.calls == ["index.csv"] and summary.extracted == ("index.csv",)
    mirror.calls.clear()
    assert download_s2100k(tmp_path, mirror).extracted == () and mirror.calls == []

    (tmp_path / "index.csv").write_bytes(INDEX + b"patch_3.tif,1.0,2.0\n")  # changed since
    with pytest.raises(OutputExistsError, match="index.csv exists and differs from the index.csv of fake://mirror"):
        download_s2100k(tmp_path, mirror)
    assert (tmp_path / "index.csv").read_bytes() == INDEX + b"patch_3.tif,1.0,2.0\n"  # never replaced

    (tmp_path / "index.csv").write_bytes(INDEX)  # back to the bytes satclip wrote: its own copy again
    new = INDEX.replace(b"10.5", b"10.6")  # the source now publishes another index
    mirror.files["index.csv"] = mirror.served["index.csv"] = new
    mirror.published["index.csv"] = _sha256(new)
    mirror.calls.clear()
    download_s2100k(tmp_path, mirror)
    assert mirror.calls == ["index.csv"] and (tmp_path / "index.csv").read_bytes() == new


def test_satclips_own_index_is_replaced_by_the_sources_new_revision(tmp_path, caplog):
    """An index.csv satclip wrote itself, untouched since, was refused as the user's ("exists and differs … satclip
    does not replace it: move it away") when the source published a new revision; a user's file, or satclip's
    edited since, still is."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path / "root", hub)
    new = INDEX.replace(b"10.5", b"10.6")
    hub.files["index.csv"] = hub.served["index.csv"] = new
    hub.published["index.csv"] = _sha256(new)
    with caplog.at_level("INFO", logger="satclip"):
        download_s2100k(tmp_path / "root", hub)
    assert (tmp_path / "root" / "index.csv").read_bytes() == new
    assert f"replacing {tmp_path / 'root' / 'index.csv'}, which satclip wrote, with the index.csv of fake://s2-100k" \
        in caplog.text
    # edited since: refused, kept
    (tmp_path / "root" / "index.csv").write_bytes(new + b"patch_9.tif,1.0,2.0\n")
    newer = INDEX.replace(b"10.5", b"10.7")
    hub.files["index.csv"] = hub.served["index.csv"] = newer
    hub.published["index.csv"] = _sha256(newer)
    with pytest.raises(OutputExistsError, match="not written by satclip, or changed since"):
        download_s2100k(tmp_path / "root", hub)
    # a user's own file of the same bytes, kept as it was, is not satclip's to replace later
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "index.csv").write_bytes(newer)
    download_s2100k(tmp_path / "user", hub)
    hub.files["index.csv"] = hub.served["index.csv"] = new
    hub.published["index.csv"] = _sha256(new)
    with pytest.raises(OutputExistsError, match="not written by satclip"):
        download_s2100k(tmp_path / "user", hub)
    assert (tmp_path / "user" / "index.csv").read_bytes() == newer


def test_a_damaged_archive_of_a_local_copy_is_bad_input(tmp_path, capsys):
    """A --from copy's archive that is no tar failed with exit 1 and "rerun to retry", which cannot help."""
    copy = _local_copy(tmp_path / "copy", {"index.csv": INDEX, "images.tar": b"no tar" * 99})
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"cannot extract {copy / 'images.tar'}: not a readable tar archive" in line
    assert "replace it with an intact copy of images.tar" in line and "rerun to retry" not in line
    assert (copy / "images.tar").read_bytes() == b"no tar" * 99  # a local copy's file is never deleted
    assert not list((tmp_path / "root").rglob("*.tif"))


@pytest.mark.parametrize("where", ["copy", "copy/sub", "root/images"])
def test_a_root_in_the_local_copy_is_refused(tmp_path, capsys, where):
    """`satclip data download DIR --from DIR` wrote .download/ and images/ into the copy it read."""
    copy = _local_copy(tmp_path / ("root/images" if where == "root/images" else "copy"), _shards())
    root = tmp_path / ("root" if where == "root/images" else where)
    before = sorted(tmp_path.rglob("*"))
    assert main(["data", "download", str(root), "--from", str(copy)]) == 2
    said = "is inside" if where == "copy/sub" else "is"  # (root/images: what it writes is the copy itself)
    assert f"{said} the local copy (--from) {copy}" in _error_line(capsys.readouterr().err)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a lock


@pytest.mark.parametrize("damaged", [False, True])
def test_a_local_copy_inside_the_roots_download_folder_is_never_deleted(tmp_path, capsys, damaged):
    """`satclip data download ROOT --from ROOT/.download/files` (the archives an earlier --keep-archives run
    left there) deleted the copy's shard after extracting it, and a damaged one as "fetch it again": satclip
    took a file under its own staging folder for its own download, though a local copy's files are never
    moved or deleted."""
    shard = b"no tar" * 99 if damaged else _tar({"patch_0.tif": b"A" * 100})
    files = {"index.csv": b"fn,lon,lat\npatch_0.tif,10.5,20.25\n", "shard-0.tar": shard}
    root = tmp_path / "root"
    copy = _local_copy(root / dl.STATE_DIR / "files", files)
    code = main(["data", "download", str(root), "--from", str(copy)])
    err = capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == files  # the user's copy, as it was
    if damaged:
        assert code == 2 and "replace it with an intact copy of shard-0.tar" in _error_line(err)
    else:
        assert code == 0, err
        assert (root / "images" / "patch_0.tif").read_bytes() == b"A" * 100


def test_a_dataset_is_never_downloaded_into_another_commands_output(tmp_path):
    """`data download ROOT` into a model directory of `satclip convert` (a satclip directory of another kind)
    mixed the dataset's index.csv, images/ and .download/ into it (a later convert --overwrite then refused it)."""
    from satclip import safe_output

    model = safe_output.make_owned_dir(tmp_path / "model", kind="output")
    (model / "config.json").write_text("{}")
    hub = FakeHub(_shards())
    with pytest.raises(OutputExistsError, match=r"is a satclip directory of kind 'output' \(another command's"):
        download_s2100k(model, hub)
    assert sorted(p.name for p in model.iterdir()) == [safe_output.MARKER, "config.json"] and hub.calls == []
    (model / "config.json").write_text('{"format": "satclip"}')  # a model, named so
    with pytest.raises(OutputExistsError, match=r"model is a satclip model \(another command's output\)"):
        download_s2100k(model, hub)
    corpus = safe_output.make_owned_dir(tmp_path / "corpus", kind="bluemarble-corpus")  # (it said "of kind 'output'")
    with pytest.raises(OutputExistsError, match=r"corpus is a satclip Blue Marble corpus \(another command's"):
        download_s2100k(corpus, hub)
    with pytest.raises(OutputExistsError, match=r"s2 is inside .*corpus, a satclip Blue Marble corpus: satclip writes"):
        download_s2100k(corpus / "s2", hub)  # (it was made in the corpus, which --overwrite then refused to replace)
    assert hub.calls == [] and not (corpus / "s2").exists()


def test_an_index_of_the_same_bytes_is_kept_as_it_is(tmp_path):
    """ROOT/index.csv, a link of the user's to a file of the same bytes, was replaced by a regular file."""
    copy = tmp_path / "elsewhere.csv"
    copy.write_bytes(INDEX)
    root = tmp_path / "root"
    root.mkdir()
    (root / "index.csv").symlink_to(copy)
    download_s2100k(root, FakeHub(_shards()))
    assert (root / "index.csv").is_symlink() and copy.read_bytes() == INDEX
    assert sorted(p.name for p in (root / "images").iterdir()) == ALL_IMAGES


def test_two_images_of_one_name_in_an_archive_are_refused(tmp_path, capsys):
    """Members a/patch_0.tif and b/patch_0.tif are both images/patch_0.tif: the second replaced the first and
    patch_0 was published holding another image's bytes (the first run failed naming a temporary path, the
    rerun said "2 images extracted")."""
    files = {**_shards(), "data/shard-000.tar": _tar({"a/patch_0.tif": b"A" * 100, "b/patch_0.tif": b"X" * 100})}
    copy = _local_copy(tmp_path / "copy", files)
    for _ in range(2):
        assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy)]) == 2
        assert _error_line(capsys.readouterr().err) == (
            f"satclip: error: cannot extract {copy / 'data' / 'shard-000.tar'}: it holds two images named "
            "patch_0.tif (a/patch_0.tif and b/patch_0.tif), which would be one file in images/; it is no S2-100K "
            "shard; replace it with an intact copy of data/shard-000.tar and rerun the same command (the other 2 "
            f"archives are done: the rerun redoes only it) (the work done so far is kept in {tmp_path / 'root'})"
        )
        assert not (tmp_path / "root" / "images" / "patch_0.tif").exists()


def test_archives_that_hold_none_of_the_indexed_images_are_said_to(tmp_path, capsys):
    """A copy whose archive holds no image said "0 images extracted", exit 0, with images/ empty; then a warning,
    still exit 0, where `satclip data verify` on the same root exits 1. It fails now, keeping what it extracted."""
    files = {"index.csv": INDEX, "data/shard-000.tar": _tar({"readme.txt": b"hi", "patch_1.tif": b"B" * 10})}
    with pytest.raises(dl.IncompleteDownloadError, match=re.escape(
            f"2 of the 3 images {tmp_path / 'root' / 'index.csv'} lists are in none of the archives of "
            "fake://s2-100k (first: patch_0.tif, patch_2.tif); the images extracted are kept")):  # fmt: skip
        download_s2100k(tmp_path / "root", FakeHub(files))
    assert (tmp_path / "root" / "images" / "patch_1.tif").is_file()
    copy = _local_copy(tmp_path / "copy", files)
    root = tmp_path / "root2"
    assert main(["data", "download", str(root), "--from", str(copy)]) == 1
    out, err = capsys.readouterr()
    assert _error_line(err) == (
        f"satclip: error: 2 of the 3 images {root / 'index.csv'} lists are in none of the archives of {copy} (first: "
        "patch_0.tif, patch_2.tif); the images extracted are kept: put the missing archives (or intact copies of "
        f"truncated ones) in the source and rerun, or delete {root / '.download'} to extract every archive again; "
        f"`satclip data verify {root}` lists them (the work done so far is kept in {root})"
    )
    assert (root / "images" / "patch_1.tif").is_file()


def test_an_unusable_file_of_a_local_copy_is_bad_input(tmp_path, capsys):
    """A git-lfs pointer in --from exited 1 with "rerun the same command to resume" (a rerun cannot mend it), and a
    file of another checksum exited 1 where a truncated archive of the same copy exited 2."""
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n"
    lfs = _local_copy(tmp_path / "lfs", {"index.csv": INDEX, "data/shard-000.tar": pointer.encode()})
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(lfs)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "git lfs pull" in line and "rerun the same command to resume" not in line, line
    files = _shards()
    copy = _local_copy(tmp_path / "copy", files)
    damaged = copy / "data" / "shard-001.tar"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"?")
    listed = [RemoteFile(name, len(data), sha256=_sha256(data)) for name, data in files.items()]
    source = LocalSource(copy)
    source.list_files = lambda: listed
    with pytest.raises(BadInputError, match="the copy is damaged or another version"):
        download_s2100k(tmp_path / "root2", source)


def test_an_image_two_shards_hold_with_other_bytes_is_the_archives_clash(tmp_path, capsys):
    """The second shard's patch_1.tif (other bytes than the first shard's) was blamed on the user ("a file of
    yours … move it away and rerun"); moving it away made the first shard clash in turn, for ever."""
    files = {"index.csv": INDEX, "data/shard-000.tar": _tar({"patch_1.tif": b"B" * 100}),
             "data/shard-001.tar": _tar({"patch_1.tif": b"Z" * 100, "patch_2.tif": b"C" * 100})}  # fmt: skip
    copy = _local_copy(tmp_path / "copy", files)
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy)]) == 2
    assert _error_line(capsys.readouterr().err) == (  # (it said "replace it with an intact copy": both are)
        f"satclip: error: cannot extract {copy / 'data' / 'shard-001.tar'}: another archive holds 1 of its images "
        "with other bytes (patch_1.tif in data/shard-000.tar); the archives clash, and both may be intact (the source "
        "mixes two versions of S2-100K): download one --revision, or keep one version's archives in the local copy, "
        f"and rerun (the work done so far is kept in {tmp_path / 'root'})"
    )
    assert (tmp_path / "root" / "images" / "patch_1.tif").read_bytes() == b"B" * 100


def test_a_rerun_counts_the_images_it_added(tmp_path):
    """One of a shard's two images deleted: the rerun extracts the shard again and said 2 images were
    extracted; it adds one."""
    files = {"index.csv": INDEX, "data/shard-000.tar": _tar({"patch_0.tif": b"A" * 10, "patch_1.tif": b"B" * 10}),
             "data/shard-001.tar": _tar({"patch_2.tif": b"C" * 10})}  # fmt: skip
    hub = FakeHub(files)
    assert download_s2100k(tmp_path, hub).images == 3
    (tmp_path / "images" / "patch_0.tif").unlink()
    summary = download_s2100k(tmp_path, hub)
    assert summary.extracted == ("data/shard-000.tar",) and summary.images == 1


def test_an_image_that_does_not_fit_is_named(tmp_path, capsys):
    """`ulimit -f 500; satclip data download ROOT --from COPY` said "file too large …: the output": members were
    written with a plain open(), whose failed write names no file."""
    import resource

    copy = _local_copy(tmp_path / "copy", {"index.csv": INDEX, "images.tar": _tar({"patch_0.tif": b"A" * 300_000})})
    root = tmp_path / "root"
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, before[1]))  # (Python ignores SIGXFSZ: writes fail EFBIG)
    try:
        assert main(["data", "download", str(root), "--from", str(copy)]) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
    assert _error_line(capsys.readouterr().err) == (
        "satclip: error: file too large for this file system or the file-size limit (ulimit -f): "
        f"{root / 'images' / 'patch_0.tif'}: raise the limit or write elsewhere"
    )
    assert not list(root.rglob("*.tif"))


@pytest.mark.parametrize(("given", "fix"), [
    ("file://{copy}", "give its path, --from {copy}"),
    ("file://localhost{spaced}", "give its path, --from '{copy} x'"),  # (the URL's %20 decoded, the path quoted)
    ("file://elsewhere/data/s2", "copy the repository from elsewhere to this machine and give that directory"),
    ("hf://torchgeo/s2-100k", "give the path of a local copy, or leave --from out to download from the hub"),
])  # fmt: skip
def test_a_url_given_to_from_is_said_to_be_one(tmp_path, capsys, given, fix):
    """`--from file:///tmp/repo` said "--from file:/tmp/repo: no such directory", as if the path were wrong; then
    "is a URL" with the URL as a path had made it (file:/tmp/repo), a %20 kept and another host taken for a folder."""
    copy = _local_copy(tmp_path / "copy", _shards())
    given = given.format(copy=copy, spaced=f"{copy}%20x")
    assert main(["data", "download", str(tmp_path / "root"), "--from", given]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"satclip data download: error: argument --from: {given} is a URL, and --from takes a "
                           f"local directory: {fix.format(copy=copy)}"), line  # fmt: skip
    assert not (tmp_path / "root").exists()


def test_a_copy_without_checksums_is_said_so_once_and_renamed_members_are_reported(tmp_path, capsys):
    """`data download --from DIR` said "no checksum to check it against (…)" once per file, and a member named
    ../../escape.tif, extracted as images/escape.tif, was counted among the images extracted without a word."""
    copy = tmp_path / "copy"
    (copy / "data").mkdir(parents=True)
    for name, data in {**_shards(), "data/shard-003.tar": _tar({"../../escape.tif": b"E" * 10})}.items():
        (copy / name).write_bytes(data)
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "5 file(s) read from the local copy, 0 already done, 4 images extracted" in out
    assert err.count("no checksum") == 1, err
    assert (f"{copy} publishes no checksum for 5 of the 5 file(s) to read (first: index.csv): they are not checked: "
            f"for a git clone pass --revision \"$(git -C {copy} rev-parse HEAD)\" (satclip knows the checksums of "
            "commit fbdbb78ba57d22d5b6be203913f1e6020c2b4e0a)") in err  # fmt: skip
    assert ("1 image member(s) of the archives were not extracted as named (first: '../../escape.tif' of "
            "shard-003.tar extracted as images/escape.tif: '..' in the path leads outside images/)") in err
    assert (tmp_path / "root" / "images" / "escape.tif").is_file() and not (tmp_path / "escape.tif").exists()


def test_a_shard_read_truncated_is_extracted_again_once_whole(tmp_path, capsys):
    """A shard of a local copy cut at a member boundary extracted 5 of its 10 images (exit 0); put back whole, the
    rerun said "3 already done, 0 images extracted": the marker's names were all there, and the file was never
    compared with the one extracted."""
    members = {f"patch_{i}.tif": bytes([65 + i]) * 600 for i in range(10)}
    index = "fn,lon,lat\n" + "".join(f"patch_{i}.tif,{i}.0,{i}.0\n" for i in range(10))
    whole = _tar(members)
    cut = whole[: 5 * 1536]  # five members of 512 + 1024 bytes: a tar ending at a member boundary
    copy = _local_copy(tmp_path / "copy", {"index.csv": index.encode(), "data/shard-000.tar": cut})
    root = tmp_path / "root"
    assert main(["data", "download", str(root), "--from", str(copy)]) == 1  # incomplete: 5 of 10
    assert len(list((root / "images").iterdir())) == 5
    (copy / "data" / "shard-000.tar").write_bytes(whole)
    capsys.readouterr()
    assert main(["data", "download", str(root), "--from", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert "data/shard-000.tar is not the file extracted before" in err
    assert "1 file(s) read from the local copy, 1 already done, 5 images extracted" in out
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(members)


def test_a_hub_shard_of_a_new_checksum_is_extracted_again(tmp_path):
    """The marker recorded the shard's sha256 and never compared it with the one the source lists now."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    new = _tar({"patch_1.tif": b"B" * 100, "extra.tif": b"X" * 10})
    hub.files["data/shard-001.tar"] = hub.served["data/shard-001.tar"] = new
    hub.published["data/shard-001.tar"] = _sha256(new)
    hub.calls.clear()
    summary = download_s2100k(tmp_path, hub)
    assert hub.calls == ["data/shard-001.tar"] and summary.images == 1
    assert (tmp_path / "images" / "extra.tif").is_file()


def _new_version_of_shard_001(hub: FakeHub) -> None:
    new = _tar({"patch_1.tif": b"Z" * 100})
    hub.files["data/shard-001.tar"] = hub.served["data/shard-001.tar"] = new
    hub.published["data/shard-001.tar"] = _sha256(new)


def test_a_new_version_of_a_shard_replaces_the_images_satclip_extracted_from_the_previous_one(tmp_path):
    """A shard redone because its source changed was refused where the new version changes an image's bytes: "not
    the image patch_1.tif of shard-001.tar (other bytes: a file of yours…)", though satclip extracted it itself
    from the previous version (only the shards done were taken for satclip's)."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    _new_version_of_shard_001(hub)
    summary = download_s2100k(tmp_path, hub)
    assert summary.extracted == ("data/shard-001.tar",) and summary.images == 1
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"Z" * 100


def test_an_image_changed_since_it_was_extracted_is_kept_from_a_new_version_of_its_shard(tmp_path):
    """An image edited since satclip extracted it is the user's: never replaced, even by its shard's new version."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    (tmp_path / "images" / "patch_1.tif").write_bytes(b"edited")
    _new_version_of_shard_001(hub)
    with pytest.raises(OutputExistsError, match=r"patch_1.tif of shard-001.tar \(other bytes: a file of yours, or "
                                                "one changed since it was extracted"):  # fmt: skip
        download_s2100k(tmp_path, hub)
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"edited"


def test_an_image_an_older_satclip_extracted_is_not_said_to_be_the_users(tmp_path):
    """A marker an older satclip wrote records no checksum of the images: one unchanged since cannot be told from
    one edited, so it is refused, and said to be satclip's own, not "a file of yours"."""
    hub = FakeHub(_shards())
    download_s2100k(tmp_path, hub)
    marker = tmp_path / dl.STATE_DIR / "done" / "data__shard-001.tar.json"
    record = json.loads(marker.read_text())
    record.pop("image_sha256", None)  # as an older satclip wrote it
    marker.write_text(json.dumps(record))
    _new_version_of_shard_001(hub)
    with pytest.raises(OutputExistsError) as raised:
        download_s2100k(tmp_path, hub)
    assert str(raised.value) == (
        f"{tmp_path / 'images' / 'patch_1.tif'} was extracted by an earlier run from the previous version of "
        "shard-001.tar, with no checksum recorded to tell whether it changed since: delete it to take the new one, "
        "and rerun"
    )
    assert (tmp_path / "images" / "patch_1.tif").read_bytes() == b"B" * 100


def _as_an_older_satclip_wrote(root: Path) -> None:
    """Rewrite the shards' markers as satclip before the shard identities wrote them: no "identity"."""
    for marker in (root / dl.STATE_DIR / "done").glob("data__*.json"):
        record = json.loads(marker.read_text())
        del record["identity"]
        marker.write_text(json.dumps(record))


class _BareHub(FakeHub):
    """A source that lists a git blob id of each file (``blob``) or nothing at all, not even a size."""

    def __init__(self, files, blob: bool):
        super().__init__(files, published={})
        self.blob = blob

    def list_files(self):
        return [RemoteFile(p, None, None, subprocess_free_git_blob_id(d) if self.blob else None)
                for p, d in self.files.items()]  # fmt: skip


@pytest.mark.parametrize("listed", ["local copy", "git blob id", "nothing"])
def test_shards_an_older_satclip_extracted_without_a_sha256_are_not_extracted_again(tmp_path, caplog, listed):
    """Markers an older satclip wrote record no identity, and a sha256 of None where the source lists none: every
    shard was extracted again ("not the file extracted before (… now, no checksum then)"), and where the source
    lists nothing at all (identity None) on every run, False != None."""
    root = tmp_path / "root"
    if listed == "local copy":
        source = LocalSource(_local_copy(tmp_path / "copy", _shards()))
    else:
        source = _BareHub(_shards(), blob=listed == "git blob id")
    download_s2100k(root, source)
    _as_an_older_satclip_wrote(root)
    for _ in range(2):  # trusted as before, then by the identity its marker records now
        with caplog.at_level("WARNING", logger="satclip"):
            summary = download_s2100k(root, source)
        assert summary.extracted == () and len(summary.skipped) == 4, summary
        assert "not the file extracted before" not in caplog.text
    if listed == "local copy":  # the marker rewritten records the identity: a change since is seen
        new = _tar({"patch_1.tif": b"B" * 100, "extra.tif": b"X" * 10})
        (tmp_path / "copy" / "data" / "shard-001.tar").write_bytes(new)
        assert download_s2100k(root, source).extracted == ("data/shard-001.tar",)
        assert (root / "images" / "extra.tif").is_file()


def test_a_changed_index_of_a_copy_without_checksums_is_read_again(tmp_path):
    """`record["listed"] == _listed_checksum(index)` was None == None for a local copy: its index.csv, changed, was
    never read again."""
    copy = _local_copy(tmp_path / "copy", _shards())
    download_s2100k(tmp_path / "root", LocalSource(copy))
    new = INDEX.replace(b"10.5", b"10.6")
    (copy / "index.csv").write_bytes(new)
    summary = download_s2100k(tmp_path / "root", LocalSource(copy))
    assert summary.extracted == ("index.csv",) and (tmp_path / "root" / "index.csv").read_bytes() == new


def test_every_file_in_a_shards_way_is_named_at_once(tmp_path):
    """Files of the user's named as a shard's images were named one a run (a rerun for each), and the shard's
    other images were published before."""
    hub = FakeHub({"index.csv": INDEX, "data/shard-000.tar": _tar({n: b"I" * 10 for n in ALL_IMAGES})})
    (tmp_path / "images").mkdir()
    for name in ALL_IMAGES[1:]:
        (tmp_path / "images" / name).write_bytes(b"mine")
    with pytest.raises(OutputExistsError) as raised:
        download_s2100k(tmp_path, hub)
    assert str(raised.value).startswith(f"2 files of {tmp_path / 'images'} are not the images of their names in "
                                        "shard-000.tar: patch_1.tif, patch_2.tif (other bytes")  # fmt: skip
    assert not (tmp_path / "images" / "patch_0.tif").exists()  # nothing of the shard published


def test_an_unknown_revision_of_a_copy_is_said_to_be_unknown(tmp_path, caplog):
    """`--revision v1.0` (no commit satclip knows) still said "pass the copy's --revision if it is a known one"."""
    copy = _local_copy(tmp_path / "copy", _shards())
    with caplog.at_level("WARNING", logger="satclip"):
        download_s2100k(tmp_path / "root", LocalSource(copy, "v1.0"))
    assert ("--revision v1.0 is no commit satclip knows checksums of (known: fbdbb78ba57d22d5b6be203913f1e6020c2b4e0a)"
            ", so they are not checked") in caplog.text  # fmt: skip


def test_an_interrupted_download_says_a_rerun_continues(tmp_path, capsys, monkeypatch):
    """A Ctrl-C during the second shard printed only "satclip: interrupted"."""
    copy = _local_copy(tmp_path / "copy", _shards())
    extract = dl.extract_images

    def interrupted(archive, *args, **kwargs):
        if archive.name == "shard-001.tar":
            raise KeyboardInterrupt
        return extract(archive, *args, **kwargs)

    monkeypatch.setattr(dl, "extract_images", interrupted)
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy)]) == 130
    assert (f"satclip: the work done is kept in {tmp_path / 'root'}: rerun the same command to continue"
            in capsys.readouterr().err)  # fmt: skip
    assert not (tmp_path / "root" / "images" / "patch_2.tif").exists()  # stopped at once, as no damaged shard does


@pytest.mark.parametrize(("extra", "said"), [
    (["--repo", "other/thing"], "--repo other/thing names a hub repository, and --from {copy} reads a local copy "
                                "instead: drop --repo, or --from to download from the hub"),
    (["--keep-archives"], "--keep-archives keeps the archives fetched from the hub, and those of --from {copy} are "
                          "read in place and never deleted: drop --keep-archives"),
])  # fmt: skip
def test_options_a_local_copy_ignores_are_refused(tmp_path, capsys, extra, said):
    """`data download ROOT --from DIR --repo other/thing --keep-archives` exited 0, both options ignored."""
    copy = _local_copy(tmp_path / "copy", _shards())
    assert main(["data", "download", str(tmp_path / "root"), "--from", str(copy), *extra]) == 2
    assert _error_line(capsys.readouterr().err) == "satclip: error: " + said.format(copy=copy)
    assert not (tmp_path / "root").exists()


def test_a_new_root_is_said_to_be_created_not_the_folders_in_it(tmp_path, capsys):
    """`data download d1` said "created d1/.download/done, which did not exist" and "created d1/images, …", and
    never d1, the path the user typed."""
    copy = _local_copy(tmp_path / "copy", _shards())
    root = tmp_path / "new" / "d1"
    assert main(["data", "download", str(root), "--from", str(copy)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "which did not exist" in line]
    assert said == [f"created {root}, which did not exist"], said
