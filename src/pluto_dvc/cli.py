"""`pluto-dvc`: everything a user runs by hand.

Errors meant for the user (:class:`PlutoDvcError`) print one message and exit non-zero (2); so do
failures of the machine rather than the data (exit 3): a read-only folder, a full disk, an I/O
error, a worker process killed by the OS. The traceback is shown only with ``--traceback`` or
``PLUTO_DVC_TRACEBACK=1``. Output into a closed pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pluto_dvc.errors import ParamsError, PlutoDvcError
from pluto_dvc.params import DEFAULT_PARAMS_FILE, Params, load_params, params_to_yaml

ENVIRONMENT_EXIT = 3
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_RAY_CRASHES = {"WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "RaySystemError"}
_STAGE_NOTE = (
    "\nnote: DVC removes a stage's outputs before it runs it (persistent ones excepted); "
    "`dvc checkout` restores the last committed ones."
)


def _add_params_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        default=None,
        help="params file (default params.yaml; all defaults when that does not exist)",
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter, e.g. -S synthetic.num_logs=2 (repeatable)",
    )


def _load_params(args: argparse.Namespace) -> Params:
    """params.yaml (or ``--params``, which must exist) plus the ``-S`` overrides."""
    if args.params is not None and not Path(args.params).is_file():
        raise ParamsError(
            f"params file {args.params} (--params) does not exist; pass an existing file, or "
            f"leave --params out to read {DEFAULT_PARAMS_FILE} (all defaults when there is none)"
        )
    return load_params(args.params or DEFAULT_PARAMS_FILE, args.overrides)


def _cmd_params(args: argparse.Namespace) -> int:
    params = _load_params(args)
    sys.stdout.write(params_to_yaml(params))
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from pluto_dvc.synthetic.dataset import synthesize_dataset

    params = _load_params(args)
    summary = synthesize_dataset(params.synthetic, params.worker, progress=True)
    print(summary.describe())
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    from pluto_dvc.selection import describe, run_selection

    params = _load_params(args)
    print(describe(run_selection(params, progress=True)))
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from pluto_dvc.selection import SCENARIOS_PATH
    from pluto_dvc.splitting import run_split

    params = _load_params(args)
    _, summary = run_split(params.split, SCENARIOS_PATH)
    print(
        f"split ({summary['method']}): logs {summary['num_logs']}, scenarios {summary['num_scenarios']}"
    )
    return 0


def _cmd_build_cache(args: argparse.Namespace) -> int:
    from pluto_dvc.cache import describe, run_build_cache

    params = _load_params(args)
    print(describe(run_build_cache(params, progress=True)))
    return 0


def _cmd_cache_inspect(args: argparse.Namespace) -> int:
    from pluto_dvc.cache.inspect import format_failures, format_inspection, inspect_cache

    if args.failures:
        print(format_failures(args.cache_dir, limit=args.limit))
        return 0
    try:
        info = inspect_cache(args.cache_dir, index=args.index, token=args.token)
    except (KeyError, IndexError) as exc:
        raise PlutoDvcError(str(exc).strip("'\"")) from None
    print(format_inspection(info))
    return 0


def _cmd_cache_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pluto_dvc.cache.inspect import verify_cache
    from pluto_dvc.cache.manifest import load_manifest

    shards = load_manifest(args.cache_dir).meta.get("shards")  # verify checks it, and lists all
    total = len(shards) if isinstance(shards, list) else 0
    with tqdm(total=total, unit="shard", desc="verify", disable=not sys.stderr.isatty()) as bar:
        report = verify_cache(args.cache_dir, progress=bar.update)
    print(
        f"ok: {report.num_shards} shards, {report.num_samples} samples, "
        f"{report.bytes / 2**20:.1f} MiB: the manifest's checksum, rows and counts agree with "
        "the shard footers; every SHA-256 and CRC-32 matches"
    )
    if report.extra_files:
        n = len(report.extra_files)
        print(f"note: {n} shard file(s) not in the manifest (the next build deletes them)")
    return 0


def _add_cache_commands(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="inspect or verify the feature cache (data/cache)")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    inspect = cache_sub.add_parser(
        "inspect", help="counts, per-type counts, bytes per sample, one sample's arrays"
    )
    inspect.add_argument("--index", type=int, default=0, help="sample to show (manifest row)")
    inspect.add_argument("--token", help="sample to show, by scenario token (16 hex)")
    inspect.add_argument("--failures", action="store_true", help="list failed scenarios instead")
    inspect.add_argument("--limit", type=int, default=20, help="failures to list")
    inspect.set_defaults(func=_cmd_cache_inspect)
    verify = cache_sub.add_parser(
        "verify", help="check every shard's SHA-256 and every sample's CRC-32 (exit 2 if bad)"
    )
    verify.set_defaults(func=_cmd_cache_verify)
    for p in (inspect, verify):
        p.add_argument("--cache-dir", default="data/cache", help="cache folder (data/cache)")


def _cmd_log_info(args: argparse.Namespace) -> int:
    from pluto_dvc.nuplan.describe import describe_log

    for path in args.db:
        print(describe_log(path))
    return 0


def _cmd_map_info(args: argparse.Namespace) -> int:
    from pluto_dvc.nuplan.describe import describe_map

    print(describe_map(args.maps_root, args.location))
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    log = sub.add_parser("log-info", help="summarise nuPlan log databases (.db)")
    log.add_argument("db", nargs="+", help="path(s) to <log_name>.db")
    log.set_defaults(func=_cmd_log_info)
    nmap = sub.add_parser("map-info", help="summarise one location's map of a maps root")
    nmap.add_argument("maps_root", help="folder holding nuplan-maps-v1.0.json")
    nmap.add_argument("location", help="e.g. us-nv-las-vegas-strip")
    nmap.set_defaults(func=_cmd_map_info)


def _cmd_train(args: argparse.Namespace) -> int:
    from pluto_dvc.training.run import TrainPaths, run_training

    params = _load_params(args)
    paths = TrainPaths(
        cache_dir=Path(args.cache_dir),
        splits_path=Path(args.splits),
        out_dir=Path(args.out_dir),
        live_dir=Path(args.live_dir),
    )
    result = run_training(params, paths)
    if result:
        summary = result.summary
        print(json.dumps({"epochs": summary["epochs"], "val": summary["val"]}, indent=2))
        print(f"MLflow run {result.mlflow_run_id} ({result.mlflow_tracking_uri})")
    return 0


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train PLUTO on the cache and split: models/ + dvclive/ (MLflow in mlflow.db)",
        description="train PLUTO (params `train`, `model`); resumes a killed run with the same inputs",
    )
    _add_params_args(train)
    train.add_argument("--cache-dir", default="data/cache", help="feature cache (data/cache)")
    train.add_argument("--splits", default="data/splits.json", help="split (data/splits.json)")
    train.add_argument("--out-dir", default="models", help="model outputs (models)")
    train.add_argument("--live-dir", default="dvclive", help="dvclive metrics and plots (dvclive)")
    train.set_defaults(func=_cmd_train)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pluto_dvc.evaluation.stage import describe, run_evaluate

    params = _load_params(args)
    metrics = run_evaluate(
        params,
        scenarios_path=args.scenarios,
        splits_path=args.splits,
        cache_dir=args.cache_dir,
        model_dir=args.model,
        reports_dir=args.reports,
        data_root=args.data_root,
        maps_root=args.maps_root,
        log_mlflow=not args.no_mlflow,
    )
    print(describe(metrics))
    return 0


def _cmd_visualize(args: argparse.Namespace) -> int:
    from pluto_dvc.evaluation.visualize import visualize_token

    params = _load_params(args)
    path = visualize_token(
        args.token, args.cache_dir, args.out, model_dir=args.model, params=params.evaluate
    )
    print(f"wrote {path}")
    return 0


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="open-loop score, baselines, learning metrics, pictures: reports/",
        description="the evaluate stage's library code without DVC (paths may point anywhere)",
    )
    _add_params_args(ev)
    ev.add_argument("--model", default="models", help="folder with model.safetensors (models)")
    ev.add_argument("--cache-dir", default="data/cache")
    ev.add_argument("--scenarios", default="data/scenarios.parquet")
    ev.add_argument("--splits", default="data/splits.json")
    ev.add_argument(
        "--reports", default="reports", help="output folder (its report files are replaced)"
    )
    ev.add_argument("--data-root", default=None, help="logs root (default: from params data)")
    ev.add_argument("--maps-root", default=None, help="maps root (default: from params data)")
    ev.add_argument("--no-mlflow", action="store_true", help="do not log into the MLflow run")
    ev.set_defaults(func=_cmd_evaluate)
    vis = sub.add_parser(
        "visualize", help="draw one cached scenario (PNG), with a model's candidates if given"
    )
    _add_params_args(vis)
    vis.add_argument("--token", required=True, help="scenario token (16 hex) in the cache")
    vis.add_argument("--model", default=None, help="folder with model.safetensors (optional)")
    vis.add_argument("--cache-dir", default="data/cache")
    vis.add_argument("--out", default=None, help="PNG path (default reports/scenes/<token>.png)")
    vis.set_defaults(func=_cmd_visualize)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pluto-dvc", description=__doc__.splitlines()[0])
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    commands: list[tuple[str, str, Callable[[argparse.Namespace], int]]] = [
        ("params", "print the resolved parameters (defaults included)", _cmd_params),
        ("synthesize", "write the synthetic nuPlan dataset (logs + maps)", _cmd_synthesize),
        ("select", "apply the scenario filter: data/scenarios.parquet + summary", _cmd_select),
        ("split", "log-level train/val/test split: data/splits.json + summary", _cmd_split),
        ("build-cache", "build the sharded feature cache: data/cache + summary", _cmd_build_cache),
    ]
    for name, help_text, func in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_params_args(p)
        p.set_defaults(func=func)
    _add_cache_commands(sub)
    _add_data_commands(sub)
    _add_train_command(sub)
    _add_evaluation_commands(sub)
    return parser


def run_guarded(func: Callable[[], int], show_traceback: bool = False, stage: bool = False) -> int:
    """Run ``func``; turn a user error or a failure of the machine into one message on stderr
    and a non-zero exit code (``stage``: add how to restore outputs DVC removed)."""
    show_traceback = show_traceback or os.environ.get("PLUTO_DVC_TRACEBACK") == "1"

    def report(message: str, code: int) -> int:
        if show_traceback:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return code

    try:
        code = func()
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # `... | head`: the reader has gone, nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a writer ended by SIGPIPE
    except PlutoDvcError as exc:
        return report(str(exc) + (_STAGE_NOTE if stage else ""), exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = environment_message(exc)
        if message is None:
            raise
        return report(message, ENVIRONMENT_EXIT)


def environment_message(exc: BaseException) -> str | None:
    """One line for a failure of the machine (full disk, read-only folder, I/O error, a worker
    killed by the OS), or None when ``exc`` is something else (a bug: its traceback is shown)."""
    if isinstance(exc, BrokenProcessPool) or (
        type(exc).__module__.startswith("ray") and type(exc).__name__ in _RAY_CRASHES
    ):
        return (
            "a worker process died (killed by the operating system, most often for lack of "
            "memory: see `dmesg`). Lower worker.num_workers (or use worker.kind: sequential) "
            "and run again; finished work is kept and the run resumes. "
            f"({type(exc).__name__}: {exc})"
        )
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    if code is None:  # pyarrow and others put the errno in the text only
        found = re.search(r"errno (\d+)", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    path = exc.filename if exc.filename is not None else "an output file"
    reason = (exc.strerror or os.strerror(code)) if code is not None else str(exc)
    if code in _DISK_FULL:
        return (
            f"the disk is full (or over quota): cannot write {path} ({reason}). Free space (or "
            "move the repository to a bigger disk) and run again; outputs written earlier are "
            "intact and finished work is kept."
        )
    if code in _NOT_WRITABLE:
        return (
            f"cannot write {path} ({reason}): make that folder writable (or run from a writable "
            "copy of the repository) and run again; outputs written earlier are intact."
        )
    if code == errno.EIO:
        return (
            f"input/output error on {path} ({reason}): the disk or its file system is failing "
            "(see `dmesg`); check it and run again."
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.func(args), args.traceback)


def run_stage(
    description: str,
    body: Callable[[Params, argparse.Namespace], None],
    paths: Sequence[tuple[str, str]] = (),
) -> None:
    """Entry point of a DVC stage script: load params.yaml (plus ``-S key=value`` overrides), call
    ``body(params, args)`` and exit with its status (one message, no traceback, on a user error).

    paths: (name, help) of each input or output file the stage reads or writes; each is a
    required ``--name PATH`` argument (``args.name``, a Path), so that dvc.yaml, which lists the
    stage's deps and outs, is also the one place that names them.
    """
    parser = argparse.ArgumentParser(description=description)
    _add_params_args(parser)
    for name, help_text in paths:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, dest=name, type=Path, required=True, metavar="PATH", help=help_text
        )
    parser.add_argument("--traceback", action="store_true")
    args = parser.parse_args()

    def call() -> int:
        body(_load_params(args), args)
        return 0

    sys.exit(run_guarded(call, args.traceback, stage=True))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
