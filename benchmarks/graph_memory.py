"""Peak memory of embedding many points at once with an exported graph (ONNX via onnxruntime, TorchScript) against
satclip's own batched ``.encode`` (the numbers in docs/export.md, "Feed many points in batches").

    python benchmarks/graph_memory.py [--model bluemarble-l40] [--points 100000] [--encode-points 300000]

Each reader runs in a fresh process, one call on all the points; the process's peak resident memory
(``ru_maxrss``) is printed with its resident memory after loading, before the call, and the difference per point,
and that per-point memory as a multiple of satclip's ``.encode``, the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _args import needs, positive_int
from hardware import print_hardware

CHILD = r"""
import json, resource, sys
import numpy as np, torch

def rss_kb():  # current resident set, from /proc (ru_maxrss is the peak)
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

reader, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
rng = np.random.default_rng(0)
points = np.stack([rng.uniform(-180, 180, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))], axis=1)
if reader == "onnxruntime":
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    call = lambda: session.run(None, {session.get_inputs()[0].name: points})[0]
elif reader == "torchscript":
    model = torch.jit.load(path)
    tensor = torch.from_numpy(points)
    def call():
        with torch.no_grad():
            return model(tensor)
else:
    import satclip
    encoder = satclip.load(path)
    call = lambda: encoder.encode(points, precision="float32")
before = rss_kb()
out = call()
print(json.dumps({"before_kb": before, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "shape": list(out.shape)}))
"""


def measure(reader: str, path: str, n: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, reader, path, str(n)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{reader}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bluemarble-l40")
    parser.add_argument("--points", type=positive_int, default=100_000, help="points per call of an exported graph")
    parser.add_argument(
        "--encode-points", type=positive_int, default=300_000, help="points per call of satclip's .encode"
    )
    args = parser.parse_args()
    needs(("onnx", "export"), ("onnxruntime", "export"))
    import satclip
    from satclip.io.onnx import export

    print_hardware("")
    print("one thread per reader")
    print("| reader | points | resident after loading | peak | (peak − loaded) per point | × .encode's per point |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        encoder = satclip.load(args.model, precision="float32")  # (the graphs compute in float32 whatever it is)
        onnx_path, script_path = Path(tmp) / "m.onnx", Path(tmp) / "m.pt"
        export(encoder, onnx_path, "onnx")
        export(encoder, script_path, "torchscript")
        runs = [("onnxruntime", str(onnx_path), args.points), ("torchscript", str(script_path), args.points),
                ("satclip .encode (float32)", args.model, args.encode_points)]  # fmt: skip
        got = {reader: measure(reader.split()[0] if reader.startswith("satclip") else reader, path, n)
               for reader, path, n in runs}  # fmt: skip
    per_point = {reader: (got[reader]["peak_kb"] - got[reader]["before_kb"]) / n for reader, _, n in runs}
    baseline = per_point[runs[-1][0]]  # (0 where the call stayed within the memory loading took: too few points)
    for reader, _, n in runs:
        ratio = f"{per_point[reader] / baseline:.1f}" if baseline > 0 else "– (no growth over loading)"
        print(f"| {reader} | {n:,} | {got[reader]['before_kb'] / 1e6:.2f} GB | {got[reader]['peak_kb'] / 1e6:.2f} GB | "
              f"{per_point[reader]:.1f} KB | {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
