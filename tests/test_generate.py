"""`python -m gan.generate`: its outputs (.npz, PNG grids, labels), where they go, and one-line
errors for bad input (the library under it: tests/test_sampling.py)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import PROJECT_ROOT, assert_usage_error, run_main, run_module
from generators import CLASSES, conditional_generator, make_generator, save_checkpoint
from PIL import Image

from gan import generate, sampling


def run_cli(*args, cwd=PROJECT_ROOT):
    return run_main("gan.generate", *args, cwd=cwd)


def test_npz_from_the_cli_is_what_generate_returns(tmp_path, run_dir):
    result = run_cli("--run", run_dir, "--n", 40, "--seed", 2, "--out", tmp_path / "s.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "s.npz") as archive:
        assert archive.files == ["images"]
        images = archive["images"]
    assert images.dtype == np.uint8 and images.shape == (40, 28, 28)
    np.testing.assert_array_equal(images, sampling.generate(make_generator(), 40, seed=2))
    truncated = run_cli("--run", run_dir, "--n", 8, "--seed", 2, "--truncation", 0.5, "--out")
    assert truncated.returncode == 0, truncated.stderr
    # its default name says so, beside the untruncated samples' name
    with np.load(run_dir / "generated" / "samples-epoch5-seed2-trunc0.5.npz") as archive:
        expected = sampling.generate(make_generator(), 8, seed=2, truncation=0.5)
        np.testing.assert_array_equal(archive["images"], expected)


def test_png_grid_from_a_bare_generator_file(tmp_path, run_dir):
    png = tmp_path / "grid.png"
    result = run_cli(
        "--generator", run_dir / "generator.keras", "--png", png, "--rows", 3, "--cols", 4
    )
    assert result.returncode == 0, result.stderr
    picture = np.asarray(Image.open(png))
    assert picture.dtype == np.uint8
    assert picture.shape == ((3 * 30 + 2) * 2, (4 * 30 + 2) * 2)  # 28 px + 2 px pad, scale 2
    first = sampling.generate(make_generator(), 1)[0]
    np.testing.assert_array_equal(picture[4:60:2, 4:60:2], first)  # top-left cell, unscaled


def test_outputs_are_never_overwritten_without_overwrite(tmp_path, run_dir):
    out = tmp_path / "s.npz"
    out.write_bytes(b"precious")
    result = run_cli("--run", run_dir, "--out", out)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_bytes() == b"precious"
    assert run_cli("--run", run_dir, "--n", 3, "--out", out, "--overwrite").returncode == 0
    with np.load(out) as archive:
        assert archive["images"].shape == (3, 28, 28)


def test_outputs_without_a_file_go_to_the_run_directory_numbered_and_stderr_stays_quiet(
    run_dir,
):
    for _ in range(2):
        result = run_module("gan.generate", "--run", run_dir, "--n", 3, "--out", "--png")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # TensorFlow's start-up lines are held back
    assert sorted(p.name for p in (run_dir / "generated").iterdir()) == [
        "grid-epoch5-seed0-2.png",
        "grid-epoch5-seed0.png",
        "samples-epoch5-seed0-2.npz",
        "samples-epoch5-seed0.npz",
    ]


def test_checkpoint_cli(tmp_path, run_dir):
    save_checkpoint(run_dir, make_generator(seed=7), 3)
    result = run_cli("--run", run_dir, "--checkpoint", 3, "--n", 6, "--out", tmp_path / "c.npz")
    assert result.returncode == 0, result.stderr
    assert "ckpt-3 (epoch 3)" in result.stdout
    with np.load(tmp_path / "c.npz") as archive:
        np.testing.assert_array_equal(
            archive["images"], sampling.generate(make_generator(seed=7), 6)
        )


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give exactly one of --run RUN_DIR and --generator FILE.keras"),
        (["--run", "RUN", "--generator", "RUN/generator.keras"], "give exactly one of"),
        (["--run", "RUN"], "nothing to write: give --out [FILE.npz] and/or --png [FILE.png]"),
        (["--run", "RUN", "--png", "--truncation", "-1"], "--truncation: must be a finite number"),
        (["--generator", "RUN/generator.keras", "--png"], "--png needs a file name (--png FILE"),
        (["--run", "RUN", "--out", "x.npy"], "--out x.npy: the file name must end in .npz"),
        (["--run", "RUN", "--png", "no/dir/g.png"], "no directory no/dir"),
        (["--run", "nowhere", "--png", "g.png"], "not a run directory"),
        (["--generator", "RUN/discriminator.keras", "--png", "g.png"], "not a generator"),
        (["--generator", "RUN/config.json", "--png", "g.png"], "not a .keras file"),
        (["--generator", "RUN/generator.keras", "--checkpoint", "1"], "--checkpoint needs --run"),
        (["--run", "RUN", "--n", "0", "--out", "s.npz"], "--n: must be >= 1, got 0"),
        (["--run", "RUN", "--seed", "x", "--out", "s.npz"], "expected a whole number"),
        # Sizes beyond any memory are refused up front, with the estimate.
        (["--run", "RUN", "--n", "10000000000", "--out", "s.npz"], "10000000000 images need "),
        (["--run", "RUN", "--rows", "100000", "--cols", "100000", "--png", "g.png"], "GiB of m"),
        (["--generator", "RUN/truncated.keras", "--png", "g.png"], "not a complete .keras file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, run_dir, args, message):
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]).save(
        run_dir / "discriminator.keras"
    )
    whole = (run_dir / "generator.keras").read_bytes()
    (run_dir / "truncated.keras").write_bytes(whole[: len(whole) // 2])
    args = [a.replace("RUN", str(run_dir)) for a in args]
    result = run_cli(*args, cwd=tmp_path)
    assert_usage_error(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # nothing written


# --- conditional runs: --label -------------------------------------------------------------


def test_labels_parse_as_a_class_a_range_or_a_comma_list():
    assert generate.parse_labels("7") == (7,)
    assert generate.parse_labels("0-3") == (0, 1, 2, 3)
    assert generate.parse_labels("1,3,5") == (1, 3, 5)
    assert generate.parse_labels("0-2, 7") == (0, 1, 2, 7)
    for text in ("", "a", "3-1", "-1", "1,,2", "256", "0-256", "1.5", "7-"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a class 0-255"):
            generate.parse_labels(text)


def test_cli_writes_the_labels_beside_the_images_of_a_conditional_run(
    tmp_path, conditional_run_dir
):
    generator = conditional_generator()
    sevens = run_cli(
        "--run",
        conditional_run_dir,
        "--label",
        7,
        "--n",
        30,
        "--out",
        tmp_path / "7.npz",
        "--png",
        tmp_path / "7.png",
    )
    assert sevens.returncode == 0, sevens.stderr
    assert "their classes: key 'labels'" in sevens.stdout
    every = run_cli("--run", conditional_run_dir, "--n", 30, "--out", tmp_path / "all.npz")
    assert every.returncode == 0, every.stderr
    for name, labels in (("7.npz", 7), ("all.npz", None)):
        with np.load(tmp_path / name) as archive:
            assert archive.files == ["images", "labels"]
            assert archive["labels"].dtype == np.uint8
            expected = sampling.label_sequence(labels, 30, CLASSES)
            np.testing.assert_array_equal(archive["labels"], expected)
            np.testing.assert_array_equal(
                archive["images"], sampling.generate(generator, 30, labels=labels)
            )
    picture = np.asarray(Image.open(tmp_path / "7.png"))
    np.testing.assert_array_equal(
        picture[4:60:2, 4:60:2], sampling.generate(generator, 1, labels=7)[0]
    )


CHECK_BEFORE_TENSORFLOW = """
import sys
from gan import generate
status = generate.main(sys.argv[1:])
print(status, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize(
    "run, label, message",
    [
        (
            "r",
            "3",
            "--label: {run_dir} is not a conditional run (train with --conditional or "
            "--self-condition)",
        ),
        ("c", "3,12", "class 12 is not one of the generator's 10 classes (0-9)"),
        ("c", "9-3", "argument --label: expected a class 0-255, a range FIRST-LAST"),
    ],
)
def test_a_label_the_run_cannot_draw_is_refused_in_one_line_before_tensorflow_loads(
    tmp_path, run_dir, conditional_run_dir, run, label, message
):
    chosen = {"r": run_dir, "c": conditional_run_dir}[run]
    args = ["--run", chosen, "--label", label, "--png", tmp_path / "g.png"]
    result = run_module("gan.generate", *args)
    assert_usage_error(result, message.format(run_dir=chosen))
    probe = subprocess.run(
        [sys.executable, "-c", CHECK_BEFORE_TENSORFLOW, *map(str, args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        check=False,
    )
    if "argument --label" not in message:  # argparse exits before printing
        assert probe.stdout.split() == ["2", "False"], probe.stderr
    assert not (tmp_path / "g.png").exists()


def test_a_bare_unconditional_generator_file_refuses_a_label(tmp_path, run_dir):
    result = run_cli(
        "--generator", run_dir / "generator.keras", "--label", 1, "--png", tmp_path / "g.png"
    )
    assert_usage_error(result, "generator.keras is not a conditional generator")
