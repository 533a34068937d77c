"""Runs the main job's `train` command with `--distribution` for a few steps.

    python tests/distribution/train_command.py <distribution> <output_dir>

Used by the distribution checks of both backends: the command line a user types
(`python -m keras_multimodel train --distribution ...`), on one bundled task.
"""

import json
import pathlib
import subprocess
import sys


def run(distribution, output_dir, env=None):
    """Trains 4 steps on classify_image; returns the command's output."""
    command = [
        sys.executable, "-m", "keras_multimodel", "train",
        f"--distribution={distribution}", f"--output_dir={output_dir}",
        "--tasks=classify_image", "--train_steps=4", "--steps_per_epoch=2",
        "--batch_size=8",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (pathlib.Path(output_dir) / "model.keras").exists()
    steps = json.loads((pathlib.Path(output_dir) / "train_time.json").read_text())["steps"]
    assert steps == 4, steps
    return output


if __name__ == "__main__":
    print(run(*sys.argv[1:3])[-400:])
