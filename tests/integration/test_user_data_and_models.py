"""Your own data and your own model, end to end through the real CLI, on real data only.

- scikit-learn's handwritten digits (1,797 8x8 scans, bundled with scikit-learn) as a .npz, float32 and
  uint8, and the same arrays served by an entry point in a package on PYTHONPATH: identical results;
- a CIFAR-shaped set (3x32x32) cut from the two photographs scikit-learn ships (china.jpg, flower.jpg);
- a model factory in a test's own package, searched over two model_args, resumed after a driver
  SIGKILL, exported, evaluated and asked to predict, and refused clearly where it cannot be imported;
- the same factory under augmentation, a cosine schedule, clipping, an L2 penalty, weight histograms and
  the GPU memory preflight;
- torchvision's FashionMNIST read offline from its own layout, and refused when absent;
- configs/examples/: the worked example a user copies, run as its header says.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import FASHION_DIR, REPO, cli, cli_env, start_cli
from support import (
    finish,
    kill_session,
    results,
    saved_statuses,
    state_checkpoints,
    surviving_epochs,
    table,
    trial_dirs,
    wait_for,
)

from orchestrator.commands.main import launch_main
from trainables.data import channel_stats
from trainables.data_readers import FASHION_CLASSES
from trainables.subsets import carve
from trainables.tensorboard_log import parameter_tags

pytest.importorskip("sklearn", reason="the digits and the sample photographs ship with scikit-learn")

DIGITS_DATA = '''\
"""The digits as arrays: float32 on the unit scale, or uint8 pixels 0..255 (the scans are 0..16)."""

import numpy as np
from sklearn.datasets import load_digits


def load(dtype="float32"):
    digits = load_digits()
    if dtype == "uint8":
        x = np.round(digits.images * (255 / 16)).astype(np.uint8)
    else:
        x = (digits.images / 16).astype(np.float32)
    return {"x_train": x, "y_train": digits.target, "classes": [str(c) for c in digits.target_names]}
'''

NETS = """\
from torch import nn


def build(input_shape, num_classes, width=32, depth=1):
    channels = input_shape[0]
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * width, num_classes))


def digits_only(input_shape, num_classes, **unused):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))  # 8x8 pixels, whatever the data
"""

USER_MODEL = "usermodels.nets:build"
DIGITS = 1797
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2  # data.test_size's default
EPOCHS = 2
TRIAL = {"mlp": {"hidden": [32]}, "batch_size": 32, "epochs": EPOCHS}


# ------------------------------------------------------------------ data and package, made once


def _module(path: Path) -> ModuleType:
    """A file of the test package, imported without putting the package on this process's sys.path."""
    spec = importlib.util.spec_from_file_location(f"_test_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pkg/digits_data.py (an entry point) and pkg/usermodels/nets.py (a model factory)."""
    root = tmp_path_factory.mktemp("pkg")
    (root / "digits_data.py").write_text(DIGITS_DATA)
    (root / "usermodels").mkdir()
    (root / "usermodels" / "__init__.py").write_text("")
    (root / "usermodels" / "nets.py").write_text(NETS)
    return root


def env_with(*paths: Path | str) -> dict[str, str]:
    """cli_env() with these directories on PYTHONPATH after the repository."""
    return cli_env(PYTHONPATH=os.pathsep.join([str(REPO), *(str(p) for p in paths)]))


@pytest.fixture(scope="module")
def digits_npz(package: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The entry point's own arrays written as .npz (no test split: one is carved), per dtype."""
    load = _module(package / "digits_data.py").load
    out = tmp_path_factory.mktemp("digits")
    files = {}
    for dtype in ("float32", "uint8"):
        arrays = load(dtype)
        assert arrays["x_train"].shape == (DIGITS, 8, 8) and arrays["x_train"].dtype == np.dtype(dtype)
        np.savez(out / f"digits-{dtype}.npz", **arrays)
        files[dtype] = out / f"digits-{dtype}.npz"
    return files


def photo_patches() -> dict[str, np.ndarray]:
    """Non-overlapping 32x32 patches of scikit-learn's two photographs, uint8 (N, 3, 32, 32); the class is
    the photograph and its half (china-left, china-right, flower-left, flower-right); every fifth patch
    is the test split."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    images, labels, classes = [], [], []
    for index, (photo, file) in enumerate(zip(photos.images, photos.filenames, strict=True)):
        rows, cols = photo.shape[0] // 32, photo.shape[1] // 32
        classes += [f"{Path(file).stem}-left", f"{Path(file).stem}-right"]
        for r in range(rows):
            for c in range(cols):
                images.append(photo[32 * r : 32 * r + 32, 32 * c : 32 * c + 32].transpose(2, 0, 1))
                labels.append(2 * index + (c >= cols // 2))
    x, y = np.ascontiguousarray(np.stack(images), dtype=np.uint8), np.array(labels, dtype=np.int64)
    test = np.arange(len(y)) % 5 == 0
    return {
        "x_train": x[~test],
        "y_train": y[~test],
        "x_test": x[test],
        "y_test": y[test],
        "classes": np.array(classes),
    }


@pytest.fixture(scope="module")
def patches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = photo_patches()
    assert arrays["x_train"].shape[1:] == (3, 32, 32) and len(arrays["x_train"]) + len(arrays["x_test"]) == 520
    path = tmp_path_factory.mktemp("patches") / "patches.npz"
    np.savez(path, **arrays)
    return path, arrays


def write_config(directory: Path, name: str, data: dict[str, Any], trial: dict[str, Any], **sections: Any) -> Path:
    config = {
        "name": name,
        "storage_path": str(directory / "runs"),
        "data": data,
        "trial": trial,
        "resources": {"cpu": 1},
        "asha": {"grace_period": trial["epochs"]},
        **sections,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def launch(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = cli("launch", str(config), *args, env=env, cwd=config.parent)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def manifest(experiment: Path) -> dict[str, Any]:
    return json.loads((experiment / "best" / "manifest.json").read_text())


def best_state(experiment: Path) -> dict[str, Any]:
    return torch.load(experiment / "best" / "model.pt", map_location="cpu", weights_only=True)


def carved(total: int, val_fraction: float = VAL_FRACTION) -> tuple[int, int, int]:
    """(train, val, test) sizes when the test split is carved by data.test_size, then val by data.val_size."""
    test = round(TEST_FRACTION * total)
    val = round(val_fraction * (total - test))
    return total - test - val, val, test


# ------------------------------------------------------------------ a, b: the digits as .npz and through an entry point


Sweep = tuple[Path, subprocess.CompletedProcess[str]]


def digits_sweep(directory: Path, dtype: str, data: dict[str, Any], env: dict[str, str] | None = None) -> Sweep:
    """mlp and cnn on the digits (float32: a 2-block cnn; uint8: 1 block)."""
    channels = [8, 16] if dtype == "float32" else [8]
    trial = {**TRIAL, "model": "mlp", "cnn": {"channels": channels, "hidden": 16}}
    config = write_config(
        directory, f"digits-{dtype}", data, trial, search={"space": {"model": {"grid": ["mlp", "cnn"]}}}
    )
    return directory / "runs" / config.stem, launch(config, env=env)


@pytest.fixture(scope="module")
def npz_sweep(digits_npz: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Sweep]:
    """The digits sweep on the .npz of one dtype, run once per module when first asked for."""
    done: dict[str, Sweep] = {}

    def sweep(dtype: str) -> Sweep:
        if dtype not in done:
            data = {"source": "npz", "path": str(digits_npz[dtype]), "val_size": VAL_FRACTION}
            done[dtype] = digits_sweep(tmp_path_factory.mktemp(f"npz-{dtype}"), dtype, data)
        return done[dtype]

    return sweep


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_digits_npz_with_the_builtin_models(
    npz_sweep: Callable[[str], Sweep], digits_npz: dict[str, Path], dtype: str
) -> None:
    experiment, done = npz_sweep(dtype)
    train, val, test = carved(DIGITS)
    assert (
        f"data: data.path {digits_npz[dtype]} (train {train}, val {val}, test {test}, input [1, 8, 8], "
        "10 classes" in done.stdout
    )
    rows = table(experiment)
    assert {r["config.model"] for r in rows.values()} == {"mlp", "cnn"}
    assert {r["status"] for r in rows.values()} == {"completed"}
    best = manifest(experiment)
    assert best["model_spec"]["input_shape"] == [1, 8, 8] and best["model_spec"]["num_classes"] == 10
    assert best["classes"] == [str(d) for d in range(10)]
    state = best_state(experiment)
    assert state["scaling"]["pixel_max"] == (1.0 if dtype == "float32" else 255.0)
    assert len(state["scaling"]["mean"]) == 1
    assert {r["epochs_run"] for r in rows.values()} == {EPOCHS}

    scored = cli("evaluate", str(experiment / "best"))
    assert scored.returncode == 0, scored.stderr
    assert f"data:  data.path {digits_npz[dtype]}, test split ({test} samples)" in scored.stdout
    assert f"test accuracy: {best['test_accuracy']:.4f} ({round(best['test_accuracy'] * test)}/{test})" in scored.stdout
    assert "matches best/manifest.json" in scored.stdout


def test_digits_through_an_entry_point_match_the_npz(
    npz_sweep: Callable[[str], Sweep], package: Path, tmp_path: Path
) -> None:
    data = {
        "source": "entry_point",
        "entry_point": "digits_data:load",
        "args": {"dtype": "float32"},
        "val_size": VAL_FRACTION,
    }
    experiment, done = digits_sweep(tmp_path, "float32", data, env=env_with(package))
    train, val, test = carved(DIGITS)
    assert (
        f"data: data.entry_point digits_data:load (train {train}, val {val}, test {test}, input [1, 8, 8]"
        in done.stdout
    )
    # Same arrays, same seed: the same splits, so every trial's numbers are the .npz run's.
    npz_experiment = npz_sweep("float32")[0]
    npz_rows = {r["config.model"]: r for r in table(npz_experiment).values()}
    for row in table(experiment).values():
        other = npz_rows[row["config.model"]]
        for column in (
            "final_train_loss",
            "final_val_accuracy",
            "final_test_accuracy",
            "best_val_accuracy",
            "best_test_accuracy",
            "best_epoch",
        ):
            assert row[column] == other[column], (row["config.model"], column)
    assert manifest(experiment)["test_accuracy"] == manifest(npz_experiment)["test_accuracy"]
    scored = cli("evaluate", str(experiment / "best"), env=env_with(package))
    assert scored.returncode == 0, scored.stderr
    assert f"data:  data.entry_point digits_data:load, test split ({test} samples)" in scored.stdout
    assert "matches best/manifest.json" in scored.stdout


# ------------------------------------------------------------------ c: a CIFAR-shaped set from real photographs


def test_photo_patches_train_a_cnn_with_channelwise_scaling(
    patches: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    path, arrays = patches
    trial = {**TRIAL, "model": "cnn", "cnn": {"channels": [8, 16], "hidden": 32}, "input_scale": "standard"}
    config = write_config(tmp_path, "patches", {"source": "npz", "path": str(path), "val_size": VAL_FRACTION}, trial)
    done = launch(config)
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    val = round(VAL_FRACTION * n_train)
    assert f"(train {n_train - val}, val {val}, test {n_test}, input [3, 32, 32], 4 classes" in done.stdout
    experiment = tmp_path / "runs" / "patches"
    state = best_state(experiment)
    assert state["model_spec"]["input_shape"] == [3, 32, 32]
    assert state["classes"] == ["china-left", "china-right", "flower-left", "flower-right"]
    # Standard scaling per channel: the training split's (after the validation carve) mean and std of R, G, B.
    assert len(state["scaling"]["mean"]) == len(state["scaling"]["std"]) == 3
    train, _ = carve(arrays["x_train"], arrays["y_train"], val, seed=0)
    mean, std = channel_stats(train.images)
    assert np.allclose(state["scaling"]["mean"], mean) and np.allclose(state["scaling"]["std"], std)

    scored = cli("evaluate", str(experiment / "best"))
    assert scored.returncode == 0, scored.stderr
    assert f"test split ({n_test} samples)" in scored.stdout and "matches best/manifest.json" in scored.stdout
    # Colour images in, one line per image out.
    from PIL import Image

    images = []
    for i in range(2):
        images.append(tmp_path / f"patch{i}.png")
        Image.fromarray(arrays["x_test"][i].transpose(1, 2, 0)).save(images[-1])
    predicted = cli("evaluate", str(experiment / "best"), "--predict", *map(str, images), "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert len(lines) == 2 and all("(then: " in line for line in lines)
    assert all(line.split()[1] in state["classes"] for line in lines)


# ------------------------------------------------------------------ d: a user's model, searched, crashed, resumed

# The driver is killed while a trial has 1..3 of its 6 epochs (batch size 1: over a second each), and at
# least 2 * EXPERIMENT_SYNC_S after the last trial finished, so the experiment state on disk knows it.
USER_EPOCHS = 8  # a window of 5 epochs for Tune's state to catch up with a trial before the kill


def _working(pgid: int) -> list[str]:
    """Processes of the session that train or schedule (Ray's idle helper agents may linger, harmlessly)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z" and "agent" not in cmdline.lower():
            found.append(cmdline[:120])
    return found


def test_user_model_searched_resumed_after_sigkill_exported_and_evaluated(
    package: Path, digits_npz: dict[str, Path], tmp_path: Path
) -> None:
    trial = {"model": USER_MODEL, "model_args": {"width": 32, "depth": 1}, "batch_size": 1, "epochs": USER_EPOCHS}
    space = {"model_args.width": {"grid": [16, 32]}, "model_args.depth": {"grid": [1, 2]}}
    data = {"source": "npz", "path": str(digits_npz["uint8"]), "val_size": VAL_FRACTION}
    config = write_config(tmp_path, "user", data, trial, search={"space": space, "max_concurrent_trials": 1})
    experiment = tmp_path / "runs" / "user"
    env = env_with(package)
    proc = start_cli("launch", str(config), cwd=tmp_path, env=env)
    try:

        def interrupted() -> Path | None:
            finished = {t.name for t in trial_dirs(experiment) if len(results(t)) == USER_EPOCHS}
            saved = saved_statuses(experiment)  # the state on disk has caught up with every finished trial
            if not finished or any(saved.get(name) != "TERMINATED" for name in finished):
                return None
            return next(
                (
                    t
                    for t in trial_dirs(experiment)
                    # the saved state names its second checkpoint or later: the rerun restores that one or,
                    # saved between Tune's two steps for a result, the one before (never none)
                    if 1 <= len(results(t)) <= USER_EPOCHS - 3
                    and state_checkpoints(experiment).get(t.name, "checkpoint_000000") > "checkpoint_000000"
                ),
                None,
            )

        victim = wait_for(interrupted, proc, what="a trial mid-run with a checkpoint")
        os.kill(proc.pid, signal.SIGKILL)  # the driver only
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while _working(proc.pid) and time.monotonic() < deadline:  # its Ray shares its fate
            time.sleep(0.2)
        assert not _working(proc.pid), _working(proc.pid)
    finally:
        kill_session(proc)
    finished = {
        t.name: (t / "result.json").read_bytes() for t in trial_dirs(experiment) if len(results(t)) == USER_EPOCHS
    }
    assert finished and victim.name not in finished
    reported_before = len(results(victim))

    code, out, err = finish(start_cli("launch", str(config), cwd=tmp_path, env=env))
    assert code == 0, err[-3000:]
    assert "resumed the experiment" in out
    for name, before in finished.items():
        assert (experiment / name / "result.json").read_bytes() == before, f"{name} was trained again"
    victim_rows = results(victim)
    assert surviving_epochs(victim_rows) == list(range(1, USER_EPOCHS + 1))
    # Epochs trained after the rerun come from a new worker process; the first is past the checkpoint.
    killed_pids = {r["pid"] for r in victim_rows[:reported_before]}
    retrained = [int(r["epoch"]) for r in victim_rows[reported_before:] if r["pid"] not in killed_pids]
    assert retrained and retrained[0] >= 2, "resumed from its checkpoint, not from scratch"

    frame = pd.read_parquet(experiment / "results.parquet")
    assert len(frame) == 4 and set(frame["status"]) == {"completed"}
    assert set(frame["epochs_run"]) == {USER_EPOCHS}
    assert sorted(zip(frame["config.model_args.width"], frame["config.model_args.depth"], strict=True)) == [
        (16, 1),
        (16, 2),
        (32, 1),
        (32, 2),
    ]
    assert set(frame["config.model"]) == {USER_MODEL}

    best = manifest(experiment)
    spec = best["model_spec"]
    assert spec["name"] == USER_MODEL and spec["input_shape"] == [1, 8, 8] and spec["num_classes"] == 10
    assert set(spec["args"]) == {"width", "depth"} and best["classes"] == [str(d) for d in range(10)]
    assert best["config"]["model_args.width"] == spec["args"]["width"]

    # A fresh process rebuilds the model from best/ alone (import path, arguments, shape, classes).
    scored = cli("evaluate", str(experiment / "best"), cwd=tmp_path, env=env)
    assert scored.returncode == 0, scored.stderr
    assert "matches best/manifest.json" in scored.stdout
    assert f"test split ({carved(DIGITS)[2]} samples)" in scored.stdout

    # best/ copied away from its experiment still predicts: real digits written as PNG files.
    from PIL import Image

    copy = tmp_path / "elsewhere" / "best"
    shutil.copytree(experiment / "best", copy)
    arrays = np.load(digits_npz["uint8"])
    images = []
    for i in range(4):
        images.append(tmp_path / f"digit-{int(arrays['y_train'][i])}.png")
        Image.fromarray(arrays["x_train"][i]).save(images[-1])
    predicted = cli("evaluate", str(copy), "--predict", *map(str, images), "--top-k", "3", cwd=tmp_path, env=env)
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert len(lines) == 4
    for image, line in zip(images, lines, strict=True):
        words = line.split()
        assert words[0] == str(image) and words[1] in best["classes"] and 0 <= float(words[2]) <= 1
        assert len(line.split("(then: ")[1].split("  ")) == 2  # top 3: the best, then two more
    as_json = cli("evaluate", str(copy), "--predict", str(images[0]), "--json", cwd=tmp_path, env=env)
    ranked = json.loads(as_json.stdout)["results"][0]["predictions"]
    assert len(ranked) == 3 and ranked == sorted(ranked, key=lambda r: -r["probability"])

    # Without the package on PYTHONPATH: one line naming the module that cannot be imported.
    missing = cli("evaluate", str(experiment / "best"), cwd=tmp_path, env=cli_env())
    assert missing.returncode == 2
    message = missing.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("data error: ") and "cannot import 'usermodels.nets'" in message
    assert "PYTHONPATH" in message


# ------------------------------------------------------------------ e: recipe and runtime settings on a user's model


def test_user_model_with_recipe_settings_histograms_and_gpu_preflight(
    package: Path, patches: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    path, _ = patches
    trial = {
        "model": USER_MODEL,
        "model_args": {"width": 8, "depth": 2},
        "batch_size": 32,
        "epochs": EPOCHS,
        "input_scale": "standard",
        "augment": {"crop_padding": 2, "flip": True},
        "schedule": {"name": "cosine"},
        "clip": {"by": "norm", "threshold": 1.0},
        "loss": {"l2": 1.0e-4},
    }
    config = write_config(
        tmp_path,
        "recipe",
        {"source": "npz", "path": str(path), "val_size": VAL_FRACTION},
        trial,
        tensorboard={"histogram_every": 1},
        runtime={"precision": "fp32", "channels_last": True, "compile": False},
    )
    env = env_with(package)

    # GPU preflight on the user's model: half a GPU of 80 GiB each fits; 100 trials on a 0.5 GiB GPU do not.
    fits = cli(
        "launch",
        str(config),
        "--dry-run",
        "--set",
        "resources.gpu=0.5",
        "--set",
        "runtime.gpu_memory_gb=80",
        cwd=tmp_path,
        env=env,
    )
    assert fits.returncode == 0, fits.stderr
    refused = cli(
        "launch",
        str(config),
        "--dry-run",
        "--set",
        "runtime.gpu_memory_gb=0.5",
        "--set",
        "resources.gpu=0.01",
        cwd=tmp_path,
        env=env,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("config error: resources.gpu: ")
    assert f"model {USER_MODEL}" in refused.stderr
    # A model that does not fit the data is refused before Ray starts, not in every trial.
    misfit = cli(
        "launch", str(config), "--dry-run", "--set", "trial.model=usermodels.nets:digits_only", cwd=tmp_path, env=env
    )
    assert misfit.returncode == 2
    assert misfit.stderr.strip().startswith(
        "config error: trial.model: usermodels.nets:digits_only {'width': 8, "
        "'depth': 2} fails on a batch of this data's input shape [3, 32, 32] "
        "(RuntimeError: "
    )

    launch(config, env=env)
    experiment = tmp_path / "runs" / "recipe"
    best = manifest(experiment)
    knobs = best["config"]
    assert knobs["augment.flip"] is True and knobs["augment.crop_padding"] == 2
    assert knobs["schedule.name"] == "cosine" and knobs["clip.by"] == "norm" and knobs["loss.l2"] == 1.0e-4
    history = pd.read_parquet(experiment / "history.parquet").sort_values("epoch")
    assert history["lr"].is_monotonic_decreasing and history["lr"].iloc[-1] < 1.0e-3  # cosine decays
    assert history["lr"].iloc[0] == pytest.approx(knobs["lr"])  # epoch 1's first step trained at the set lr
    assert (history["lr_last"] < history["lr"]).all()  # ... and its last step lower: cosine moves every step
    assert all(np.isfinite(history["train_loss"]))

    # Weight histograms of the user's layers, at the init (epoch 0) and after every epoch.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    nets = _module(package / "usermodels" / "nets.py")
    expected = set(parameter_tags(nets.build((3, 32, 32), 4, **best["model_spec"]["args"])).values())
    (trial_dir,) = trial_dirs(experiment)
    events = EventAccumulator(str(trial_dir), size_guidance={"histograms": 0})
    events.Reload()
    assert set(events.Tags()["histograms"]) == expected
    assert "params/0.Conv2d/weight" in expected
    for tag in expected:
        assert [e.step for e in events.Histograms(tag)] == list(range(EPOCHS + 1)), tag


# ------------------------------------------------------------------ f: torchvision's layout, offline


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's Fashion-MNIST files decompressed into torchvision's layout: <root>/FashionMNIST/raw/*-ubyte."""
    root = tmp_path_factory.mktemp("torchvision")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for file in FASHION_DIR.glob("*-ubyte.gz"):
        with gzip.open(file) as src, open(raw / file.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert len(list(raw.iterdir())) == 4, "the Debian package dataset-fashion-mnist is part of the environment"
    return root


def test_torchvision_dataset_by_name_without_download(torchvision_root: Path, tmp_path: Path) -> None:
    data = {
        "source": "torchvision",
        "dataset": "FashionMNIST",
        "root": str(torchvision_root),
        "train_limit": 2000,
        "val_size": 1000,
    }
    trial = {"model": "mlp", "mlp": {"hidden": [16]}, "batch_size": 64, "epochs": 1}
    config = write_config(tmp_path, "tv", data, trial)
    done = launch(config)
    assert (
        f"data: torchvision FashionMNIST under {torchvision_root} (train 2000, val 1000, test 10000, "
        "input [1, 28, 28], 10 classes" in done.stdout
    )
    assert manifest(tmp_path / "runs" / "tv")["classes"] == list(FASHION_CLASSES)

    absent = tmp_path / "no-such-root"
    refused = cli("launch", str(config), "--set", f"data.root={absent}", cwd=tmp_path)
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"data error: data.root: FashionMNIST not found under {absent}")
    assert "data.download: true" in message
    assert not absent.exists() and refused.stdout == ""  # refused before Ray started; nothing downloaded


# ------------------------------------------------------------------ configs/examples: the worked example

EXAMPLE = REPO / "configs" / "examples" / "digits.yaml"


def test_the_worked_example_runs_as_documented(tmp_path: Path) -> None:
    header = EXAMPLE.read_text()
    assert "PYTHONPATH=configs/examples python -m orchestrator launch configs/examples/digits.yaml" in header
    env = cli_env(PYTHONPATH=os.pathsep.join([str(REPO), "configs/examples"]))  # relative, from the repo root
    done = cli(
        "launch",
        "configs/examples/digits.yaml",
        "--storage-path",
        str(tmp_path),
        "--set",
        "trial.epochs=2",
        "--set",
        "asha.grace_period=2",
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    train, val, test = carved(DIGITS, yaml.safe_load(header)["data"]["val_size"])
    assert f"data: data.entry_point digits_data:load (train {train}, val {val}, test {test}, " in done.stdout
    frame = pd.read_parquet(tmp_path / "digits" / "results.parquet")
    assert len(frame) == 4 and set(frame["status"]) == {"completed"}
    assert {"config.model_args.width", "config.model_args.depth"} <= set(frame.columns)
    spec = manifest(tmp_path / "digits")["model_spec"]
    assert spec["name"] == "digits_model:build" and spec["input_shape"] == [1, 8, 8]
    scored = cli("evaluate", str(tmp_path / "digits" / "best"), cwd=REPO, env=env)
    assert scored.returncode == 0, scored.stderr
    assert "matches best/manifest.json" in scored.stdout


def test_the_worked_example_dry_runs_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What tests/unit/test_recipe_configs.py needs for this file: its modules on sys.path."""
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    assert launch_main([str(EXAMPLE), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("experiment: digits") and "ASHA:" in out
    assert "input [1, 8, 8], 10 classes" in out
