"""`pluto-dvc`: everything a user runs by hand.

Errors meant for the user (:class:`PlutoDvcError`) print one message and exit non-zero; the
traceback is shown only with ``--traceback`` or ``PLUTO_DVC_TRACEBACK=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from pluto_dvc.errors import PlutoDvcError
from pluto_dvc.params import DEFAULT_PARAMS_FILE, Params, load_params, params_to_yaml


def _add_params_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="params file (params.yaml)")
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter, e.g. -S synthetic.num_logs=2 (repeatable)",
    )


def _cmd_params(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.overrides)
    sys.stdout.write(params_to_yaml(params))
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from pluto_dvc.synthetic.dataset import synthesize_dataset

    params = load_params(args.params, args.overrides)
    summary = synthesize_dataset(params.synthetic, params.worker, progress=True)
    print(summary.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pluto-dvc", description=__doc__.splitlines()[0])
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    commands: list[tuple[str, str, Callable[[argparse.Namespace], int]]] = [
        ("params", "print the resolved parameters (defaults included)", _cmd_params),
        ("synthesize", "write the synthetic nuPlan dataset (logs + maps)", _cmd_synthesize),
    ]
    for name, help_text, func in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_params_args(p)
        p.set_defaults(func=func)
    return parser


def run_guarded(func: Callable[[], int], show_traceback: bool = False) -> int:
    """Run ``func``; turn a user error into one message on stderr and its exit code."""
    show_traceback = show_traceback or os.environ.get("PLUTO_DVC_TRACEBACK") == "1"
    try:
        return func()
    except PlutoDvcError as exc:
        if show_traceback:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(lambda: args.func(args), args.traceback)


def run_stage(description: str, body: Callable[[Params, argparse.Namespace], None]) -> None:
    """Entry point of a DVC stage script: load params.yaml (plus ``-S key=value`` overrides), call
    ``body(params, args)`` and exit with its status (one message, no traceback, on a user error)."""
    parser = argparse.ArgumentParser(description=description)
    _add_params_args(parser)
    parser.add_argument("--traceback", action="store_true")
    args = parser.parse_args()

    def call() -> int:
        body(load_params(args.params, args.overrides), args)
        return 0

    sys.exit(run_guarded(call, args.traceback))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
