"""DVC stage `feature_probe`: a digest of what the current feature code builds on a fixed probe
set (params `features`; see pluto_dvc.cache.probe).

Writes the digest file (a pure function of the feature params and the builder's outputs, so an
edit that changes no output leaves it byte-identical and DVC does not rebuild the cache) and an
info file with the code hash it ran with (not a dependency of build_cache; build_cache uses it
to refuse a stale probe).
"""

from pluto_dvc.cache.probe import probe_info, run_probe
from pluto_dvc.cli import run_stage
from pluto_dvc.io import write_json


def body(params, args) -> None:
    record = run_probe(params.features)
    write_json(args.info, probe_info())
    write_json(args.digest, record)
    print(
        f"feature probe: {record['scenarios']} scenarios ({record['invalid']} invalid), "
        f"digest {record['digest'][:16]}"
    )


if __name__ == "__main__":
    run_stage(
        __doc__,
        body,
        paths=[
            ("digest", "output: the probe digest (JSON)"),
            ("info", "output: the code hash the probe ran with (JSON)"),
        ],
    )
