"""DVC stage `build_cache`: the sharded PLUTO feature cache of the selection (params `features`,
`cache`).

Reads the selection and the logs and maps it records, and the feature probe's digest (which
keys the cache in place of the feature code); writes the cache folder (manifest, failures,
shards) and its summary (JSON, a DVC metric) to the paths dvc.yaml passes. `worker` settings
change no output, so they are read but not a dependency. The cache is a persistent output:
finished shards survive an interrupted run and a grown selection, and are not computed again.
"""

from pluto_dvc.cache import describe, run_build_cache
from pluto_dvc.cli import run_stage


def body(params, args) -> None:
    report = run_build_cache(
        params,
        scenarios_path=args.scenarios,
        cache_dir=args.cache,
        summary_path=args.summary,
        progress=True,
        probe_path=args.probe,
        probe_info_path=args.probe_info,
    )
    print(describe(report))


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("scenarios", "input: the selection (parquet)"),
            ("probe", "input: the feature probe's digest (JSON)"),
            ("probe_info", "input: the code hash the probe ran with (JSON)"),
            ("cache", "output: the cache folder"),
            ("summary", "output: the build summary (JSON metric)"),
        ],
    )
