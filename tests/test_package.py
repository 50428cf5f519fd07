"""The package as a user installs it: the shipped default model loads from any folder, from a checkout or a wheel."""

import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LOAD_DEFAULT = "import xfer_jax; p = xfer_jax.load(); print(xfer_jax.__file__); print(p.config.kind)"


def test_the_shipped_default_loads_without_a_path_from_outside_the_checkout(tmp_path):
    done = subprocess.run([sys.executable, "-c", LOAD_DEFAULT], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "xfer"


@pytest.mark.parametrize("folder", sorted(p.name for p in (REPO / "checkpoints").iterdir() if p.is_dir()))
def test_every_shipped_checkpoint_loads_and_scores_with_this_version(folder):
    import numpy as np

    import xfer_jax
    from xfer_jax.hardware import HARDWARE_FEATURE_NAMES

    predictor = xfer_jax.load(REPO / "checkpoints" / folder)
    rng = np.random.default_rng(0)
    trace_ids, trace_values = rng.integers(1, 30, size=(5, 48)), rng.random((5, 48, 6))  # ignored without traces
    scores = predictor.predict(np.abs(rng.normal(size=(5, 3, 164))), np.ones((5, 3), bool), rng.normal(size=(5, 20)),
                               np.zeros(len(HARDWARE_FEATURE_NAMES)), trace_ids, trace_values)  # older: a prefix
    assert scores.shape == (5,) and np.isfinite(scores).all() and np.ptp(scores) > 0


def test_a_built_wheel_carries_the_default_model_and_loads_it_outside_the_checkout(tmp_path):
    pytest.importorskip("wheel", reason="building a wheel offline needs the wheel package")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("xfer_jax-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    assert any(name.startswith("xfer_jax/checkpoints/default/best/") for name in names)
    assert not any(name.startswith(("checkpoints/", "xfer_jax/checkpoints/lopo")) for name in names)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the editable install of this checkout
    done = subprocess.run([sys.executable, "-c", LOAD_DEFAULT], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    module_file, kind = done.stdout.split()[-2:]
    assert pathlib.Path(module_file).is_relative_to(site) and kind == "xfer"


def test_compiled_predict_buckets_are_kept_on_disk_for_the_next_process(tmp_path):
    script = ("import numpy as np, xfer_jax; from xfer_jax import checkpoint\n"
              f"checkpoint.use_compilation_cache({str(tmp_path / 'cache')!r})\n"
              "p = xfer_jax.load()\n"
              "p.predict(np.ones((3, 2, 164)), np.ones((3, 2), bool), np.zeros((3, 20)), np.zeros(20),\n"
              "          np.ones((3, 48)), np.ones((3, 48, 6)))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any((tmp_path / "cache").iterdir())
