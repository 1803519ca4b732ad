"""Protocols (split invariants), metrics (against scikit-learn) and probes (they learn, deterministically)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from satclip.encoding.points import places
from satclip.eval import metrics, probes, protocols
from satclip.eval.tasks import Task


@pytest.fixture(autouse=True)
def one_thread():
    """Fit as the runner does (one torch thread): much faster on a busy shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


CONTINENTS = ("Africa", "Asia", "Europe", "North America", "Oceania", "South America")


def _task(n=1200, kind="regression", seed=0) -> Task:
    rng = np.random.default_rng(seed)
    points = np.stack([rng.uniform(-180, 180, n), rng.uniform(-60, 80, n)], axis=1)
    continents = np.array(CONTINENTS)[rng.integers(0, 6, n)]
    continents[:5] = "Seven seas (open ocean)"
    targets = rng.standard_normal(n) if kind == "regression" else rng.integers(0, 3, n)
    classes = None if kind == "regression" else np.array(["a", "b", "c"])
    return Task("synthetic", kind, points, targets, continents, "t", "s", classes)


def _check_partition(fold, n):
    parts = [set(fold.train.tolist()), set(fold.val.tolist()), set(fold.test.tolist())]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    return set().union(*parts) == set(range(n))


def test_random_split_partitions_and_is_seeded():
    task = _task()
    folds = protocols.make_folds("random", task, [0, 1])
    assert [f.name for f in folds] == ["seed=0", "seed=1"]
    for fold in folds:
        assert _check_partition(fold, len(task))
        assert (len(fold.train), len(fold.val), len(fold.test)) == (720, 240, 240)
    again = protocols.make_folds("random", task, [0])
    np.testing.assert_array_equal(again[0].test, folds[0].test)
    assert not np.array_equal(folds[0].test, folds[1].test)


def test_holdout_continent_zero_shot_and_one_percent():
    task = _task()
    folds = protocols.make_folds("holdout-continent", task, [0])
    assert len(folds) == 12 and {f.variant for f in folds} == {"zero-shot", "1%"}
    by_group = {}
    for fold in folds:
        assert (task.continents[fold.test] == fold.group).all()
        assert not (task.continents[fold.val] == fold.group).any()
        inside_train = (task.continents[fold.train] == fold.group).sum()
        n_group = (task.continents == fold.group).sum()
        n_shot = max(1, round(0.01 * n_group))
        assert inside_train == (0 if fold.variant == "zero-shot" else n_shot)
        assert len(fold.test) == n_group - n_shot
        by_group.setdefault(fold.group, []).append(fold)
    for zero, few in by_group.values():
        np.testing.assert_array_equal(zero.test, few.test)  # the same test points for both variants
        assert set(few.train.tolist()) - set(zero.train.tolist()) and set(zero.train.tolist()) < set(few.train.tolist())


def test_spatial_block_tests_every_point_once_and_keeps_blocks_apart():
    task = _task()
    folds = protocols.make_folds("spatial-block", task, [0], block_deg=20, k=4)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(task)))
    blocks = protocols.block_ids(task.points, 20)
    for fold in folds:
        assert _check_partition(fold, len(task))
        test_blocks = set(blocks[fold.test].tolist())
        assert not test_blocks & set(blocks[fold.train].tolist()) and not test_blocks & set(blocks[fold.val].tolist())
        assert not set(blocks[fold.train].tolist()) & set(blocks[fold.val].tolist())


def test_paper_split_is_half_and_regression_only():
    folds = protocols.make_folds("paper", _task(1000), [3])
    assert (len(folds[0].train), len(folds[0].val), len(folds[0].test)) == (500, 0, 500)
    with pytest.raises(ValueError, match="regression"):
        protocols.make_folds("paper", _task(kind="classification"), [0])
    with pytest.raises(KeyError, match="known: holdout-continent, paper, random, spatial-block"):
        protocols.make_folds("leave-one-out", _task(), [0])


def test_metrics_match_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y, p = rng.standard_normal(200), rng.standard_normal(200)
    assert metrics.mse(y, p) == pytest.approx(sk.mean_squared_error(y, p))
    assert metrics.r2(y, p) == pytest.approx(sk.r2_score(y, p))
    c, d = rng.integers(0, 5, 300), rng.integers(0, 6, 300)
    assert metrics.accuracy(c, d) == pytest.approx(sk.accuracy_score(c, d))
    assert metrics.macro_f1(c, d) == pytest.approx(sk.f1_score(c, d, average="macro"))


def _data(kind, n=900, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    signal = np.sin(2 * x[:, 0]) + x[:, 1] ** 2 - 1
    if kind == "regression":
        y = (signal + 0.05 * rng.standard_normal(n)).astype(np.float32)
        k = 0
    else:
        y = np.digitize(signal, [-0.5, 0.5]).astype(np.int64)
        k = 3
    a, b = int(0.6 * n), int(0.8 * n)
    return probes.ProbeData(x[:a], y[:a], x[a:b], y[a:b], x[b:], kind, k), y[b:]


def test_ridge_probe_matches_least_squares_on_a_linear_problem():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 5))
    w = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    y = x @ w + 0.7
    data = probes.ProbeData(x[:300], y[:300], x[300:400], y[300:400], x[400:], "regression")
    result = probes.create("linear").fit_predict(data, seed=0)
    np.testing.assert_allclose(result.predictions, y[400:], atol=1e-3)
    assert result.info["alpha"] == min(probes.linear.RIDGE_ALPHAS)


@pytest.mark.parametrize("width", [40, 1500])
def test_ridge_weights_are_the_regularised_least_squares_with_more_features_than_samples_too(width):
    """With fewer samples than features the weights come from the samples' Gram matrix (a 10,000-wide basis took
    minutes in a features × features decomposition): the same weights, for every penalty."""
    from satclip.eval.probes.linear import _ridge_weights

    rng = np.random.default_rng(4)
    x = rng.standard_normal((200, width))
    x -= x.mean(axis=0)
    y = rng.standard_normal(200)
    y -= y.mean()
    weights = _ridge_weights(x, y)
    for penalty in (1e-3, 1.0, 100.0):
        expected = np.linalg.solve(x.T @ x + penalty * np.eye(width), x.T @ y)
        np.testing.assert_allclose(weights(penalty), expected, rtol=0, atol=1e-8 * np.abs(expected).max())


def test_mlp_beats_linear_on_a_nonlinear_target_and_is_deterministic():
    data, y_test = _data("regression")
    mlp = probes.create("mlp", max_epochs=40)
    first = mlp.fit_predict(data, seed=0)
    again = mlp.fit_predict(data, seed=0)
    np.testing.assert_array_equal(first.predictions, again.predictions)
    other = mlp.fit_predict(data, seed=1)
    assert not np.array_equal(first.predictions, other.predictions)
    linear = probes.create("linear").fit_predict(data, seed=0)
    assert metrics.mse(y_test, first.predictions) < 0.5 * metrics.mse(y_test, linear.predictions)
    assert first.info["lr"] in (1e-3, 3e-3) and 1 <= first.info["epochs"] <= 40


def test_classification_probes_learn():
    data, y_test = _data("classification")
    chance = np.bincount(y_test).max() / len(y_test)
    mlp = probes.create("mlp", max_epochs=40).fit_predict(data, seed=0)
    logistic = probes.create("linear").fit_predict(data, seed=0)
    assert metrics.accuracy(y_test, mlp.predictions) > chance + 0.2
    assert metrics.accuracy(y_test, logistic.predictions) > chance
    assert logistic.info["lambda"] in probes.linear.LOGISTIC_LAMBDAS


def test_mlp_hidden_layers_are_independent_but_the_paper_mlp_shares_one():
    from satclip.eval.probes.mlp import MLPConfig, build_mlp
    from satclip.eval.probes.paper import build_notebook_mlp

    ours = build_mlp(10, 1, MLPConfig(hidden=16, layers=3))
    assert sum(p.numel() for p in ours.parameters()) == (10 * 16 + 16) + 2 * (16 * 16 + 16) + (16 + 1)
    notebook = build_notebook_mlp(10)
    linears = [m for m in notebook if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 and linears[1] is linears[2]  # the notebook's [Linear, ReLU] * 2
    assert sum(p.numel() for p in notebook.parameters()) == (10 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    data, _ = _data("regression", n=300)
    result = probes.create("paper-mlp", epochs=50).fit_predict(data, seed=0)
    assert result.predictions.shape == (60,) and result.info["shared_hidden"]


def test_a_pole_is_one_block_whatever_its_longitude():
    """Points at exactly ±90° were split into blocks by longitude (and lat 90 into a row of its own), so the
    same location sat in training and test folds."""
    lon = np.linspace(-180, 180, 21)
    points = np.concatenate([np.column_stack([lon, np.full(21, 90.0)]), np.column_stack([lon, np.full(21, -90.0)]),
                             np.column_stack([lon, np.full(21, 85.0)])])  # fmt: skip
    blocks = protocols.block_ids(points, 10)
    assert len(set(blocks[:21])) == 1 and len(set(blocks[21:42])) == 1 and blocks[0] != blocks[21]
    assert blocks[0] in set(blocks[42:])  # the north pole lies in the 80–90° band's blocks
    task = Task(name="poles", kind="regression", points=points, targets=np.arange(63.0),
                continents=np.array(["Asia"] * 63), target="y", source="test")  # fmt: skip
    for fold in protocols.make_folds("spatial-block", task, [0], block_deg=10, k=3):
        poles = {split: set(points[index][np.abs(points[index, 1]) == 90, 1]) for split, index in
                 (("train", fold.train), ("test", fold.test))}  # fmt: skip
        assert not poles["train"] & poles["test"]


def test_the_antimeridian_is_one_meridian_in_blocks_and_in_the_repeated_locations_note(tmp_path, caplog):
    """lon 180 had a block of its own, apart from lon −180's: a global grid with both edges put the same location in
    training and test folds of spatial-block, and the note on repeated locations did not count them."""
    from satclip.eval.tasks.table import table_task

    blocks = protocols.block_ids(np.array([[180.0, 10.0], [-180.0, 10.0], [179.99, 10.0], [-179.99, 10.0]]), 10.0)
    assert blocks[0] == blocks[1] == blocks[3] != blocks[2]
    lat = np.arange(-60.0, 61.0, 10.0)
    grid = np.array([(x, y) for x in np.arange(-180.0, 181.0, 10.0) for y in lat])
    task = Task(name="grid", kind="regression", points=grid, targets=np.arange(len(grid), dtype=float),
                continents=np.array(["Asia"] * len(grid)), target="y", source="test")  # fmt: skip
    edge = places(grid)
    for fold in protocols.make_folds("spatial-block", task, [0], block_deg=10, k=3):
        at = {split: {tuple(p) for p in edge[index] if p[0] == -180} for split, index in
              (("train", np.concatenate([fold.train, fold.val])), ("test", fold.test))}  # fmt: skip
        assert at["test"] and not at["train"] & at["test"]
    with caplog.at_level("WARNING"):
        table_task(pd.DataFrame({"lon": grid[:, 0], "lat": grid[:, 1], "y": np.arange(len(grid), dtype=float)}))
    assert f"{len(lat)} row(s) repeat another row's location" in caplog.text


def test_too_few_blocks_for_the_folds_names_both_ways_out():
    with pytest.raises(ValueError, match=r"lie in \d+ blocks of 60°, and 30 folds need at least 31; use smaller "
                                         r"blocks \(--block-deg\) or fewer folds \(--folds\)"):  # fmt: skip
        protocols.make_folds("spatial-block", _task(), [0], block_deg=60, k=30)



def test_a_task_object_in_an_eval_config_is_told_where_a_table_goes():
    """``EvalConfig(tasks=(table_task(df),))`` was "TypeError: unhashable type: 'numpy.ndarray'" from the registry;
    a DataFrame goes in ``task_file=TaskFile(df)``, which evaluates it."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, TaskFile, evaluate
    from satclip.eval.tasks.table import table_task

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-180, 180, 300), "lat": rng.uniform(-60, 60, 300)})
    frame["y"] = np.sin(np.radians(frame["lat"]))
    with pytest.raises(BadInputError, match=r"tasks takes task names \(e\.g\. 'koppen'\), got a Task; a table of "
                                            r"your own is task_file=TaskFile\(path, target_col=\.\.\.\)"):  # fmt: skip
        EvalConfig(encoders="wrap", tasks=(table_task(frame, name="mine"),))
    rows = evaluate(EvalConfig(encoders="wrap", task_file=TaskFile(frame), probes="linear", seeds=0, use_cache=False))
    assert {row["task"] for row in rows} == {"table"} and np.isfinite([row["mse"] for row in rows]).all()

def test_an_eval_config_takes_one_name_for_a_tuple_and_refuses_what_cannot_be_meant(tmp_path):
    """tasks="koppen" was read letter by letter ('unknown task k'), an empty encoder list gave an empty
    result as if evaluated, n_points=0 a row of NaN scores, probe_options not keyed by probe were ignored, a path
    as task_file or encoder an AttributeError."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, TaskOptions

    config = EvalConfig(encoders="wrap", tasks="koppen", probes="linear", seeds=3)
    assert (config.encoders, config.tasks, config.probes, config.seeds) == (("wrap",), ("koppen",), ("linear",), (3,))
    assert EvalConfig(encoders=(tmp_path / "model",)).encoders == (str(tmp_path / "model"),)
    for kwargs, message in (({"encoders": ()}, "encoders is empty"),
                            ({"encoders": ("wrap",), "task_file": "points.csv"}, "must be a TaskFile"),
                            ({"encoders": ("wrap",), "probe_options": {"alpha": 1.0}}, "keyed by probe name"),
                            ({"encoders": ("wrap",), "threads": -1}, "threads=-1 must be"),
                            ({"encoders": ("wrap",), "names": {"direct": "d"}}, r"keyed by encoder spec \(wrap")
                            ):  # fmt: skip
        with pytest.raises(BadInputError, match=message):
            EvalConfig(**kwargs)
    with pytest.raises(ValueError, match="n_points=0 must be an integer, 10 or more"):
        TaskOptions(n_points=0)


def test_an_eval_config_takes_encoder_specs_one_string_as_the_clis_list_and_checks_workers(monkeypatch):
    """A loaded encoder failed as "'LocationEncoder' object has no attribute 'strip'" (in a tuple) or "not iterable"
    (alone), "wrap,direct" was one spec where --encoders reads two; workers="two" was a TypeError once the encoders
    were built and workers=0 ran sequentially; TaskOptions(n_points=-5) was a plain ValueError."""
    import satclip
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, TaskOptions
    from satclip.io import load

    encoder = satclip.load("bluemarble-l10")
    monkeypatch.setattr(load, "load", lambda *a, **k: pytest.fail("EvalConfig loaded a model"))
    assert EvalConfig(encoders="wrap,theory(min_radius=1,max_radius=360)", tasks="koppen").encoders == (
        "wrap", "theory(min_radius=1,max_radius=360)")  # fmt: skip
    for encoders in (encoder, (encoder,), ("wrap", encoder), None):
        with pytest.raises(BadInputError, match=r"^EvalConfig: encoders are spec strings \(e\.g\. 'bluemarble-l10', "
                                                r"'bluemarble-l10\+range\+', a model's path\), got a value of type "
                                                r"(LocationEncoder|NoneType): give the spec or path"):  # fmt: skip
            EvalConfig(encoders=encoders, tasks="koppen")
    for workers in ("two", 0, -1, True, 2.0):
        with pytest.raises(BadInputError, match=rf"^EvalConfig: workers={workers!r} must be a number of processes, "
                                                r"1 or more$"):  # fmt: skip
            EvalConfig(encoders="wrap", tasks="koppen", workers=workers)
    assert EvalConfig(encoders="wrap", tasks="koppen", workers=2).workers == 2
    for options in ({"n_points": -5}, {"n_points": 2_000_000}, {"seed": 2**32}, {"min_class_points": 0}):
        with pytest.raises(BadInputError, match=r"^TaskOptions: "):
            TaskOptions(**options)


def test_eval_options_that_are_true_or_false_refuse_other_values():
    """threads=True ran on one thread, and use_cache/allow_download="no" were true: the cache was used, the task's
    data downloaded."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, TaskOptions

    with pytest.raises(BadInputError, match=r"^EvalConfig: threads=True must be a number of threads"):
        EvalConfig(encoders="wrap", tasks="koppen", threads=True)
    with pytest.raises(BadInputError, match=r"^use_cache must be True or False, got 'no'$"):
        EvalConfig(encoders="wrap", tasks="koppen", use_cache="no")
    for key in ("allow_download", "use_cache"):
        with pytest.raises(BadInputError, match=rf"^{key} must be True or False, got 0$"):
            TaskOptions(**{key: 0})
    assert not EvalConfig(encoders="wrap", tasks="koppen", use_cache=False).use_cache
    assert EvalConfig(encoders="wrap", tasks="koppen", workers=np.int64(2)).workers == 2  # (as seeds take them)



def test_an_eval_config_defaults_to_the_clis_tasks_and_names_python_arguments_when_it_has_none(tmp_path):
    """EvalConfig(encoders=...) had no tasks where `satclip evaluate` runs all of them, and its refusal was a plain
    ValueError telling a Python caller to "give --tasks and/or --task-file"."""
    from satclip.cli import build_parser
    from satclip.cli.evaluate import _config
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig, TaskFile
    from satclip.eval.runner import load_tasks

    cli = _config(build_parser().parse_args(["evaluate", "--encoders", "wrap", "--out", str(tmp_path / "o")]))
    assert EvalConfig(encoders=("wrap",)).tasks == cli.tasks and len(cli.tasks) == 7
    assert EvalConfig(encoders=("wrap",), task_file=TaskFile(tmp_path / "points.csv")).tasks == ()
    with pytest.raises(BadInputError, match=r"no tasks to evaluate: give tasks and/or a task_file \(satclip"):
        load_tasks(EvalConfig(encoders=("wrap",), tasks=()))

def test_holdout_continent_refusal_names_points_of_no_continent_and_more_points():
    """Points of no continent were listed with a blank name (" 23, Africa 13"), and the only advice was another
    protocol "for points of one continent", for points that spanned the globe but were too few."""
    task = _task(n=40)
    task.continents[:] = np.array(["", "Africa", "Europe", "Asia"] * 10)
    said = r"the points by continent: \(no continent\) 10, Africa 10, Asia 10, Europe 10: give more points \(--n-"
    with pytest.raises(ValueError, match=said):
        protocols.make_folds("holdout-continent", task, [0])
