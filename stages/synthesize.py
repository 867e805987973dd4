"""DVC stage `synthesize`: write the synthetic nuPlan dataset (params section `synthetic`)."""

from pluto_dvc.cli import run_stage
from pluto_dvc.synthetic.dataset import synthesize_dataset


def body(params, _args) -> None:
    summary = synthesize_dataset(params.synthetic, params.worker, progress=True)
    print(summary.describe())


if __name__ == "__main__":
    run_stage(__doc__, body)
