#!/usr/bin/env bash
# 10 million points: Parquet in → Parquet out (input columns + 256-d float32 list column), L = 10
# architecture, float32. Measures wall time and peak RSS of an uninterrupted run, then kills a second run
# with SIGKILL halfway, resumes it, and checks that both outputs are byte-identical.
#
#   bash benchmarks/embed_10m.sh            # N=10000000 WORK=/tmp/satclip-embed-10m by default
#   N=1000000 bash benchmarks/embed_10m.sh  # a quicker rehearsal
#
# PY: the python with satclip (default .venv/bin/python if it exists, else python3 on PATH); MODEL: the
# checkpoint (default the fixtures' L = 10 one, from $SATCLIP_FIXTURES or ../shared/fixtures).
#
# Needs ~11 GB free in $WORK (the 10 GB Parquet output, written once, chunk by chunk).
#
# No same-run baseline ratio: what this checks is absolute (the 10M-point run completes with a peak RSS that does
# not grow with N, and a run killed halfway resumes to a byte-identical file); the wall times are for the record.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000000}
WORK=${WORK:-/tmp/satclip-embed-10m}
if [ -z "${PY:-}" ]; then  # the project's venv if there is one, else the python on PATH
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
MODEL=${MODEL:-${SATCLIP_FIXTURES:-../shared/fixtures}/satclip-reference/satclip-resnet18-l10.ckpt}
# at L = 10 "analytic-stable" equals the released "analytic" basis to 1e-12 and is the fast path
ARGS=(--model "$MODEL" --harmonics analytic-stable --dtype float32 --no-progress)
mkdir -p "$WORK"
"$PY" benchmarks/hardware.py

if [ ! -f "$WORK/points.parquet" ]; then
  "$PY" - "$N" "$WORK/points.parquet" <<'PYEOF'
import sys
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
n, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("lon", pa.float64()), ("lat", pa.float64())])) as w:
    for start in range(0, n, 1_000_000):
        k = min(1_000_000, n - start)
        lat = np.rad2deg(np.arcsin(rng.uniform(-1, 1, k)))
        w.write_table(pa.table({"id": np.arange(start, start + k), "lon": rng.uniform(-180, 180, k), "lat": lat}))
PYEOF
fi

measure() {  # measure LABEL OUTPUT: run satclip embed under /usr/bin/time -v, print wall and peak RSS
  local label=$1 out=$2 log="$WORK/$1.time"
  /usr/bin/time -v "$PY" -m satclip embed "$WORK/points.parquet" -o "$out" "${ARGS[@]}" 2> "$log"
  echo "$label: wall $(grep 'Elapsed (wall' "$log" | awk '{print $NF}'), peak RSS $(grep 'Maximum resident' "$log" | awk '{printf "%.2f GB", $NF/1048576}'), CPU $(grep -E 'User time|System time' "$log" | awk '{s+=$NF} END {printf "%.0f s", s}')"
}

echo "== uninterrupted run ($N points)"
rm -rf "$WORK/clean.parquet" "$WORK/clean.parquet.partial"
measure clean "$WORK/clean.parquet"
CLEAN_SHA=$(sha256sum "$WORK/clean.parquet" | cut -d' ' -f1)
ls -l "$WORK/clean.parquet"
rm -f "$WORK/clean.parquet"   # free 10 GB before the second run

echo "== killed run"
rm -rf "$WORK/killed.parquet" "$WORK/killed.parquet.partial"
"$PY" -m satclip embed "$WORK/points.parquet" -o "$WORK/killed.parquet" "${ARGS[@]}" &
PID=$!
CHUNKS=$(( (N + 65535) / 65536 ))
MANIFEST="$WORK/killed.parquet.partial/manifest.json"
until [ -f "$MANIFEST" ] && [ "$("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['done']))" "$MANIFEST" 2>/dev/null || echo 0)" -ge $((CHUNKS / 2)) ]; do
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID" && status=0 || status=$?
    echo "the embed to be killed ended (exit status $status) before half of its $CHUNKS chunks were recorded"; exit 1
  fi
  sleep 1
done
kill -9 "$PID"; wait "$PID" || true
echo "killed after $("$PY" -c "import json,sys; print(len(json.load(open(sys.argv[1]))['done']))" "$MANIFEST") of $CHUNKS chunks; output exists: $([ -e "$WORK/killed.parquet" ] && echo yes || echo no)"

echo "== resumed run"
measure resumed "$WORK/killed.parquet"
RESUMED_SHA=$(sha256sum "$WORK/killed.parquet" | cut -d' ' -f1)
echo "sha256 clean   $CLEAN_SHA"
echo "sha256 resumed $RESUMED_SHA"
[ "$CLEAN_SHA" = "$RESUMED_SHA" ] && echo "checksums equal" || { echo "CHECKSUMS DIFFER"; exit 1; }
rm -f "$WORK/killed.parquet"
