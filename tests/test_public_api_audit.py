"""The public Python API as an audit of it found it: a DataFrame task file in run_evaluation, "~" in save, arrays
in SatCLIP.encode_location, EvalConfig's fields checked where it is made, radians given to encode, point dicts
given to encode, and the registries' and load_config's errors. Each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_run_evaluation_takes_a_dataframe_task_file(tmp_path):
    """A TaskFile of a DataFrame (its docstring allows one) was "TypeError: expected str, bytes or os.PathLike
    object, not DataFrame" from the check that the output is none of the inputs; evaluate took it."""
    from satclip.eval import EvalConfig, TaskFile, run_evaluation

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-170, 170, 60), "lat": rng.uniform(-60, 60, 60), "y": rng.normal(size=60)})
    config = EvalConfig(encoders=("wrap",), task_file=TaskFile(frame, target_col="y"), seeds=(1,), probes=("linear",))
    out = run_evaluation(config, tmp_path / "out", figures=False)
    assert [(row["task"], row["encoder"]) for row in out.rows] == [("table", "wrap")]
    assert out.files["csv"].is_file()
