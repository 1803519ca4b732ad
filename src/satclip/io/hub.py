"""Fetching checkpoints from the Hugging Face hub (optional ``huggingface_hub`` extra).

``huggingface_hub`` verifies each LFS file against the sha256 the hub publishes and caches it under
``HF_HOME``; offline, a :class:`DownloadError` says which file to fetch and how to pass it instead.
"""

from __future__ import annotations

from pathlib import Path


class DownloadError(RuntimeError):
    pass


def _download(repo_id: str, filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise DownloadError(
            f"fetching {repo_id}/{filename} needs huggingface_hub: pip install 'satclip[hub]', or download "
            f"https://huggingface.co/{repo_id}/resolve/main/{filename} yourself and pass its path"
        ) from err
    return Path(hf_hub_download(repo_id=repo_id, filename=filename))


def fetch(repo_id: str, filename: str) -> Path:
    """Download (or find in the hub cache) ``filename`` of ``repo_id`` and return its local path."""
    try:
        return _download(repo_id, filename)
    except DownloadError:
        raise
    except Exception as err:  # noqa: BLE001 - network, auth and hub errors all end the same way
        url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        raise DownloadError(
            f"could not download {filename} from the Hugging Face repository {repo_id} ({type(err).__name__}: "
            f"{err}).\nIf this machine is offline, fetch {url} elsewhere, copy it here and pass the file "
            f"path instead, e.g. satclip.load('/path/to/{filename}') or `satclip ... --model /path/to/{filename}`."
        ) from err


def list_files(repo_id: str) -> list[str]:
    try:
        from huggingface_hub import list_repo_files
    except ImportError as err:
        raise DownloadError(f"resolving {repo_id} needs huggingface_hub: pip install 'satclip[hub]'") from err
    try:
        return list_repo_files(repo_id)
    except Exception as err:  # noqa: BLE001
        raise DownloadError(
            f"could not list the Hugging Face repository {repo_id} ({type(err).__name__}: {err}). Offline, "
            "download its checkpoint (.ckpt) or native model (config.json + model.safetensors) elsewhere and "
            "pass the local path."
        ) from err
