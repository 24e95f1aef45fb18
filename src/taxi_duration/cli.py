"""The ``taxi-duration`` command: parse arguments, run the flow, print a summary.

Errors a user can act on are printed as one line on stderr with a non-zero exit: 2 for a
bad argument, 1 for a failure of the run (e.g. a month that is not published).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from taxi_duration import __version__
from taxi_duration.errors import TaxiDurationError
from taxi_duration.ingest import check_color_and_month, check_local_file
from taxi_duration.models import training_config
from taxi_duration.months import Month
from taxi_duration.request import TrainRequest

PROG = "taxi-duration"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_in(name: str, low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} {value} is out of range: allowed {low}-{high}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG, description="Train NYC taxi trip-duration models on monthly TLC data."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    train = commands.add_parser(
        "train",
        help="train on one month, evaluate on the next, register the model",
        description="Train on one month of TLC data, evaluate on the following month "
        "(or --val-year/--val-month), and register the model in MLflow.",
    )
    _add_month_options(train, validation_optional=True)
    train.add_argument("--model", choices=["xgboost", "linear"], help="default: xgboost")
    train.add_argument(
        "--features", choices=["default", "pu_do", "separate"], help="default: default"
    )
    train.add_argument(
        "--preset", choices=["reference"], help="reference: the course's XGBoost, exactly"
    )
    _add_min_improvement(train)
    _add_output_options(train)

    tune = commands.add_parser(
        "tune",
        help="search XGBoost parameters, then train and register the best model",
        description="Search XGBoost parameters (Optuna TPE, pruned on the validation month's "
        "RMSE), each trial a nested MLflow run, then train the final model with the best "
        "parameters and register it. Seeded: with --jobs 1 a run is reproducible.",
    )
    _add_month_options(tune, validation_optional=False)
    tune.add_argument("--trials", type=_int_in("trials", 1, 100_000), default=20)
    tune.add_argument(
        "--timeout", type=_positive_seconds, help="stop starting trials after S seconds"
    )
    tune.add_argument(
        "--jobs", type=_int_in("jobs", 1, 64), default=1, help="trials run in parallel"
    )
    tune.add_argument("--seed", type=_int_in("seed", 0, 2**31 - 1), default=42)
    _add_min_improvement(tune)
    _add_output_options(tune)

    predict = commands.add_parser(
        "predict",
        help="score every trip of a month with the champion (or --model-uri)",
        description="Predict the duration of every trip of a month (no duration filter) and "
        "write parquet: ride_id, zones, predicted_duration (null where a zone or the "
        "distance is missing) and model_version.",
    )
    predict.add_argument("--color", default="green", choices=["green", "yellow"])
    predict.add_argument("--year", type=_int_in("year", 2009, 9999), required=True)
    predict.add_argument("--month", type=_int_in("month", 1, 12), required=True)
    predict.add_argument("--input", help="local parquet file instead of downloading")
    predict.add_argument("--model-uri", help="default: models:/<TAXI_DURATION_MODEL_NAME>@champion")
    predict.add_argument("--output", required=True, help="parquet file to write")
    _add_output_options(predict)

    promote = commands.add_parser(
        "promote",
        help="make a registered version the champion by hand (e.g. a rollback)",
        description="Point the champion alias at a registered version; the replaced "
        "champion becomes the challenger.",
    )
    promote.add_argument("--version", type=_int_in("version", 1, 10**9), required=True)
    _add_output_options(promote)

    backtest = commands.add_parser(
        "backtest",
        help="train on each month of a range and validate on the next, in parallel on Dask",
        description="For each consecutive pair of months from --from to --to, train on the "
        "first and validate on the second, like train (nothing is registered), with the "
        "reference preset as baseline. Pairs run in parallel on a local Dask cluster of "
        "--workers processes, or on an existing cluster at --dask-address.",
    )
    backtest.add_argument("--color", default="green", choices=["green", "yellow"])
    backtest.add_argument("--from", dest="start", type=_month, required=True, metavar="YYYY-MM")
    backtest.add_argument("--to", dest="end", type=_month, required=True, metavar="YYYY-MM")
    backtest.add_argument("--model", choices=["xgboost", "linear"], help="default: xgboost")
    backtest.add_argument(
        "--features", choices=["default", "pu_do", "separate"], help="default: default"
    )
    backtest.add_argument(
        "--preset", choices=["reference"], help="reference: the course's XGBoost, exactly"
    )
    executors = backtest.add_mutually_exclusive_group()
    executors.add_argument(
        "--workers",
        type=_int_in("workers", 1, 256),
        help="worker processes of the local Dask cluster (default 2)",
    )
    executors.add_argument(
        "--dask-address", help="an existing Dask scheduler, e.g. tcp://127.0.0.1:8786"
    )
    _add_output_options(backtest)

    from taxi_duration import stack

    stack.add_command(commands)
    return parser


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except TaxiDurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_min_improvement(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--min-improvement",
        type=_non_negative_minutes,
        default=0.0,
        help="RMSE (minutes) by which a new version must beat the champion (default 0)",
    )


def _non_negative_minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"min-improvement {text!r} is not a number of minutes"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"min-improvement {text} is out of range: 0 or more")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"timeout {text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"timeout {text} is out of range: more than 0 seconds")
    return value


def _add_month_options(command: argparse.ArgumentParser, validation_optional: bool) -> None:
    command.add_argument("--color", default="green", choices=["green", "yellow"])
    command.add_argument("--year", type=_int_in("year", 2009, 9999), required=True)
    command.add_argument("--month", type=_int_in("month", 1, 12), required=True)
    if validation_optional:
        command.add_argument("--no-validation", action="store_true", help="train on one month only")
    command.add_argument("--val-year", type=_int_in("val-year", 2009, 9999))
    command.add_argument("--val-month", type=_int_in("val-month", 1, 12))
    command.add_argument("--train-path", help="local parquet file instead of downloading")
    command.add_argument("--val-path", help="local parquet file for the validation month")


def _add_output_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON object, last on stdout"
    )
    command.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's logs on the console"
    )


class _DropRunFailures(logging.Filter):
    """Keep the console free of Prefect's failure reports: the CLI reports the failure itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        )


def _configure_runtime(verbose: bool) -> None:
    # Set before Prefect is imported; a user's own setting wins.
    # A loaded 2-core machine can take more than Prefect's 20 s to start the ephemeral server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "WARNING"
    )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if verbose else "false")
    # MLflow's own HTTP retries (7, backoff factor 2, 120 s timeout) take many minutes to give
    # up on a dead tracking server: a few quick retries, then one clear error.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    if not verbose:
        # Each of MLflow's HTTP retries is a urllib3 warning; the CLI reports the outcome.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_DropRunFailures())


def _print_summary(result: dict[str, Any]) -> None:
    print(
        f"Trained {result['model']} on {result['features']} features, "
        f"{result['color']} {result['train_month']}"
    )
    print(f"  rows loaded   {result['rows_loaded']:>12,}")
    print(f"  rows kept     {result['rows_kept']:>12,}")
    print(f"  features      {result['n_features']:>12,}")
    print(f"  RMSE train    {result['rmse_train']:>12.4f}")
    if result["val_month"]:
        print(
            f"  RMSE {result['val_month']}  {result['rmse']:>11.4f}  "
            f"({result['val_rows']:,} validation trips)"
        )
    if result["intercept"] is not None:
        print(f"  intercept     {result['intercept']:>12.4f}")
    print(
        f"  model         {result['model_name']} version {result['model_version']} "
        f"({result['model_size_bytes']:,} bytes)"
    )
    print(f"  MLflow run    {result['run_id']} at {result['tracking_uri']}")
    role = "champion" if result["promoted"] else "challenger"
    print(f"  promotion     {role}: {result['promotion_reason']}")
    if result.get("best_params"):
        print(f"  tuning        best of {result['n_trials']} trials: {result['best_params']}")
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result["timings"].items())
    print(f"  timings       {steps}")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "promote":
        from taxi_duration import tracking
        from taxi_duration.settings import Settings

        settings = Settings()
        previous = tracking.set_champion(settings, str(args.version))
        return {
            "model_name": settings.model_name,
            "champion_version": str(args.version),
            "previous_champion": previous,
        }

    if args.command == "backtest":
        from taxi_duration.backtest import BacktestFailedError
        from taxi_duration.flows import backtest

        try:
            return backtest(
                color=args.color,
                start=str(args.start),
                end=str(args.end),
                model=args.model,
                features=args.features,
                preset=args.preset,
                workers=args.workers,
                dask_address=args.dask_address,
            ).to_dict()
        except BacktestFailedError as failure:  # print every pair, then exit 1
            return failure.summary.to_dict()

    from taxi_duration.flows import predict, train, tune

    if args.command == "predict":
        return predict(
            color=args.color,
            year=args.year,
            month=args.month,
            output=args.output,
            input_path=args.input,
            model_uri=args.model_uri,
        ).to_dict()
    if args.command == "tune":
        return tune(
            color=args.color,
            year=args.year,
            month=args.month,
            val_year=args.val_year,
            val_month=args.val_month,
            train_path=args.train_path,
            val_path=args.val_path,
            trials=args.trials,
            timeout=args.timeout,
            jobs=args.jobs,
            seed=args.seed,
            min_improvement=args.min_improvement,
        ).to_dict()
    summary = train(
        color=args.color,
        year=args.year,
        month=args.month,
        val_year=args.val_year,
        val_month=args.val_month,
        validation=not args.no_validation,
        train_path=args.train_path,
        val_path=args.val_path,
        model=args.model,
        features=args.features,
        preset=args.preset,
        min_improvement=args.min_improvement,
    )
    return summary.to_dict()


def _check_before_running(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Checks that need no server, so that a bad argument fails at once."""
    if args.command == "predict":
        check_color_and_month(args.color, Month(args.year, args.month))
        if args.input:
            check_local_file(Path(args.input), "input")
        return
    if args.command == "backtest":
        from taxi_duration.backtest import month_range

        month_range(args.start, args.end)
        for month in (args.start, args.end):
            check_color_and_month(args.color, month)
        training_config(args.model, args.features, args.preset)
        return
    if args.command not in ("train", "tune"):
        return
    if (args.val_year is None) != (args.val_month is None):
        parser.error("--val-year and --val-month go together")
    validation = not getattr(args, "no_validation", False)
    if not validation and args.val_year is not None:
        parser.error("--no-validation conflicts with --val-year/--val-month")
    TrainRequest.build(
        args.color,
        args.year,
        args.month,
        args.val_year,
        args.val_month,
        validation,
        args.train_path,
        args.val_path,
    )
    if args.command == "train":
        training_config(args.model, args.features, args.preset)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "stack":
        from taxi_duration import stack

        return stack.run(args.action)
    try:
        _check_before_running(parser, args)
        _configure_runtime(args.verbose)
        result = _run(args)
    except TaxiDurationError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    _PRINTERS.get(args.command, _print_summary)(result)
    if args.json:
        print(json.dumps(result))
    return 1 if result.get("failed") else 0  # a backtest with failed pairs


def _print_prediction(result: dict[str, Any]) -> None:
    print(
        f"Scored {result['rows_scored']:,} trips of {result['color']} {result['month']} with "
        f"{result['model_uri']} (version {result['model_version']}); "
        f"{result['rows_without_prediction']:,} without a prediction"
    )
    print(f"  wrote {result['output']}")


def _print_promotion(result: dict[str, Any]) -> None:
    print(
        f"{result['model_name']}@champion is now version {result['champion_version']} "
        f"(was {result['previous_champion'] or 'none'})"
    )


def _print_backtest(result: dict[str, Any]) -> None:
    chosen = result["preset"] or f"{result['model']} on {result['features']} features"
    print(
        f"Backtest of {chosen}, {result['color']} {result['start']}..{result['end']} "
        f"({result['executor']}), baseline {result['baseline']}"
    )
    print(f"  {'train':<8} {'val':<8} {'rows':>10} {'RMSE':>9} {'baseline':>9}")
    for pair in result["results"]:
        if pair["error"]:
            print(f"  {pair['train']:<8} {pair['val']:<8} failed: {pair['error']}")
        else:
            print(
                f"  {pair['train']:<8} {pair['val']:<8} {pair['rows']:>10,} "
                f"{pair['rmse']:>9.4f} {pair['baseline_rmse']:>9.4f}"
            )
    if result["run_id"]:
        print(f"  MLflow run    {result['run_id']} at {result['tracking_uri']}")
    if result["failed"]:
        print(f"  {result['failed']} of {len(result['results'])} pairs failed", file=sys.stderr)


_PRINTERS = {
    "predict": _print_prediction,
    "promote": _print_promotion,
    "backtest": _print_backtest,
}


if __name__ == "__main__":
    raise SystemExit(main())
