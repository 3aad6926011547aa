"""Whether a flag of this TensorFlow's XLA:CPU makes the step compiled with XLA (--jit) as fast
as the step without it (issue 16: XLA would fuse the step's ~300 small ops, but on this CPU
its matrix products are slower; docs/performance.md).

    python -m experiments.xla_flags [--epochs 6] [--data PATH] [--out FILE.md]

Runs `python -m gan.train --epochs EPOCHS` as a user does (experiments.end_to_end.run_gan_train),
once with --no-jit (the CPU default) and once with --jit under each XLA_FLAGS setting of
FLAG_SETS, in ROUNDS interleaved rounds, on the 10,000 MNIST digits. Each variant's speed is
its median epoch (the first, which compiles, left out), best of the rounds, as steps/s and as a
ratio to the step without XLA measured in the same run. Run it on an otherwise idle machine:
the load average is in the output.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from experiments.end_to_end import gan_train_rate
from experiments.timing import (
    best_of,
    from_project_root,
    load_average,
    ratio_rows,
    report,
    time_in_rounds,
    training_run_parser,
)
from gan.tables import markdown_table

# XLA_FLAGS settings tried (the names are this TensorFlow's XLA:CPU options); "" is XLA as is.
FLAG_SETS = (
    "",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
)
ROUNDS = 2
NO_XLA = "without XLA (--no-jit)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = training_run_parser(
        "python -m experiments.xla_flags", __doc__, 6, "epochs per run", least=3
    )(argv)

    from gan import data
    from gan.config import Config

    path = Path(args.data).resolve()
    steps = Config().steps_per_epoch(len(data.load_path(path)))

    def variant(jit: str, flags: str | None):
        """A run with `jit` and XLA_FLAGS `flags` (None: unset)."""
        return gan_train_rate(str(path), steps, jit, env={"XLA_FLAGS": flags})

    variants = {
        NO_XLA: variant("--no-jit", None),
        **{f"--jit {s}".strip(): variant("--jit", s) for s in FLAG_SETS},
    }
    # time_in_rounds gives each variant its argument: here the epochs of a run
    best = best_of(time_in_rounds(variants, args.epochs, ROUNDS))
    rows = ratio_rows(best, NO_XLA)
    command = shlex.join(["python", "-m", "experiments.xla_flags", *argv])
    text = "\n".join(
        [
            "# XLA:CPU flags against the step without XLA",
            "",
            f"`{command}`",
            "",
            markdown_table(["variant (XLA_FLAGS)", "steps/s", "vs without XLA"], rows, 1),
            "",
            f"`python -m gan.train --data {from_project_root(path)} --epochs {args.epochs}` with "
            f"each variant's flags, {ROUNDS} interleaved rounds; steps/s: {steps} steps over the "
            "median epoch after the first, best of the rounds. Load average at the end: "
            f"{load_average()}.",
            "",
        ]
    )
    report(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
