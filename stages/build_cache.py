"""DVC stage `build_cache`: the sharded PLUTO feature cache of the selection (params `features`).

Reads data/scenarios.parquet and the logs and maps it names; writes data/cache/ (manifest, failures,
shards) and data/cache_summary.json (a DVC metric). `worker` settings change no output, so they are
read but not a dependency. data/cache is a persistent output: finished shards survive an
interrupted run and a grown selection, and are not computed again.
"""

from pluto_dvc.cache import describe, run_build_cache
from pluto_dvc.cli import run_stage


def body(params, _args) -> None:
    print(describe(run_build_cache(params, progress=True)))


if __name__ == "__main__":
    run_stage(__doc__, body)
