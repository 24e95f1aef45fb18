"""The ``taxi-duration`` command: parse arguments, run the flow, print a summary.

Errors a user can act on are printed as one line on stderr with a non-zero exit: 2 for a
bad argument, 1 for a failure of the run (e.g. a month that is not published).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import os
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from taxi_duration import __version__
from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.errors import BacktestFailedError, TaxiDurationError

if TYPE_CHECKING:
    from taxi_duration.specs import Spec

PROG = "taxi-duration"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), exit code 2, and no abbreviations.

    An unknown option is reported first, with the closest valid one, before argparse would
    say that a required option is missing (``--yaer 2023`` means ``--year``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None and self._subparsers is None:  # a command's own options
            self._reject_unknown_options(args)
        return super().parse_known_args(args, namespace)

    def _reject_unknown_options(self, args: Sequence[str]) -> None:
        known = list(self._option_string_actions)
        for token in args:
            if token == "--":
                return
            if not token.startswith("-") or self._negative_number_matcher.match(token):
                continue
            option = token.split("=", 1)[0]
            if option not in self._option_string_actions:
                close = difflib.get_close_matches(option, known, n=1)
                hint = f": did you mean {close[0]}?" if close else ""
                self.error(f"unrecognized argument {option}{hint}")


def _number(kind: type[int] | type[float], name: str) -> Callable[[str], Any]:
    """Parse a number; its range is the spec's to check."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not a {noun}") from None

    return parse


def _scalar_type(annotation: Any) -> type:
    """int, float, bool or str: what a field's annotation (optional, annotated) boils down to."""
    if annotation in (bool, int, float, str):
        return typing.cast(type, annotation)
    for argument in typing.get_args(annotation):
        if argument is not type(None):
            return _scalar_type(argument)
    return str


def _add_spec_options(command: argparse.ArgumentParser, spec: type[Spec]) -> None:
    """One option per field of ``spec``: its name, type, help and allowed values."""
    properties = spec.model_json_schema()["properties"]
    for name, field in spec.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        flag = str(extra.get("flag", "--" + name.replace("_", "-")))
        kind = _scalar_type(field.annotation)
        if kind is bool:  # a switch: --no-<flag> turns one that is on by default off
            switch, action = (
                (f"--no-{flag[2:]}", "store_false") if field.default else (flag, "store_true")
            )
            command.add_argument(switch, dest=name, action=action, help=field.description)
            continue
        schema = properties[name]
        allowed = schema.get("enum") or next(
            (option["enum"] for option in schema.get("anyOf", []) if "enum" in option), None
        )
        if extra.get("positional"):
            command.add_argument(name, choices=allowed, help=field.description)
            continue
        required = field.is_required() or bool(extra.get("cli_required"))
        help_text = field.description or ""
        if not required and field.default is not None and "default" not in help_text:
            help_text = f"{help_text} (default {field.default})".strip()
        command.add_argument(
            flag,
            dest=name,
            required=required,
            type=_number(kind, flag[2:]) if kind in (int, float) else str,
            metavar="{" + ",".join(allowed) + "}" if allowed else None,
            help=help_text or None,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG, description="Train NYC taxi trip-duration models on monthly TLC data."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    for name, (_, summary, description) in COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=description)
        _add_spec_options(command, _spec_class(name))
        _add_output_options(command)

    _add_stack_command(commands)
    return parser


def _add_stack_command(commands: argparse._SubParsersAction[_ArgumentParser]) -> None:
    # Defined here, not in taxi_duration.stack, which loads httpx: --help stays light.
    command = commands.add_parser(
        "stack",
        help="start or stop the local Prefect server, MLflow server and worker",
        description="up: start a Prefect server, an MLflow server and a process worker on "
        "127.0.0.1 in the background and wait until they answer; down: stop them; "
        "status: show what runs. Ports: TAXI_DURATION_PREFECT_PORT (4200), "
        "TAXI_DURATION_MLFLOW_PORT (5000); state, logs and PID files in .stack/ "
        "(TAXI_DURATION_STACK_DIR).",
    )
    command.add_argument("action", choices=["up", "down", "status"])


# Each command: its spec's class in taxi_duration.specs (imported when the parser is built,
# after main has set the environment that the libraries it loads read once), help, description.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": (
        "TrainSpec",
        "train on one month, evaluate on the next, register the model",
        "Train on one month of TLC data, evaluate on the following month "
        "(or --val-year/--val-month), and register the model in MLflow.",
    ),
    "tune": (
        "TuneSpec",
        "search XGBoost parameters, then train and register the best model",
        "Search XGBoost parameters (Optuna TPE, pruned on the validation month's "
        "RMSE), each trial a nested MLflow run, then train the final model with the best "
        "parameters and register it. Seeded: with --jobs 1 a run is reproducible.",
    ),
    "predict": (
        "PredictSpec",
        "score every trip of a month with the champion (or --model-uri)",
        "Predict the duration of every trip of a month (no duration filter) and "
        "write parquet: ride_id, zones, predicted_duration (null where a zone or the "
        "distance is missing) and model_version.",
    ),
    "monitor": (
        "MonitorSpec",
        "judge the champion on a month it has not seen: RMSE, drift, degraded or not",
        "Score the color's champion on a published month it was neither trained nor "
        "validated on: its RMSE and MAE against the validation RMSE recorded on its version, "
        "the drift of each input and of the predictions from its training month, and the "
        "month's data checks. Degraded months emit taxi-duration.model.degraded.",
    ),
    "promote": (
        "PromoteSpec",
        "make a registered version the champion by hand (e.g. a rollback)",
        "Point the champion alias of a color's model at one of its versions, showing the "
        "validation RMSE of both; the replaced champion becomes the challenger.",
    ),
    "serve": (
        "ServeSpec",
        "serve the color's champion over HTTP (MLflow's scoring protocol), following the alias",
        "An HTTP service for models:/<TAXI_DURATION_MODEL_NAME>@champion: POST /invocations "
        "(MLflow's dataframe_records or dataframe_split), POST /trip (one trip as a JSON "
        "object), GET /ping and GET /health. Each answer names its model version (header "
        "X-Model-Version). The alias is polled every TAXI_DURATION_SERVE_POLL_SECONDS (5): a "
        "new champion is loaded and tested beside the served one, then swapped in; one that "
        "fails is not switched to. Without a champion it answers 503 until one exists.",
    ),
    "cache": (
        "CacheSpec",
        "list (ls) or remove (clear) the prepared months cached under the data folder",
        "The prepared months are cached as parquet under TAXI_DURATION_DATA_DIR/prepared, "
        "keyed by the source file's bytes and the prepare step's code. ls lists them, most "
        "recently used first, with their size; clear removes them. Beyond "
        "TAXI_DURATION_CACHE_MAX_GB the least recently used are removed.",
    ),
    "backtest": (
        "BacktestSpec",
        "train on each month of a range and validate on the next, in parallel on Dask",
        "For each consecutive pair of months from --from to --to, train on the "
        "first and validate on the second, like train (nothing is registered), with the "
        "reference preset as baseline. Pairs run in parallel on a local Dask cluster of "
        "--workers processes, or on an existing cluster at --dask-address.",
    ),
}


def _spec_class(command: str) -> type[Spec]:
    from taxi_duration import specs

    spec: type[Spec] = getattr(specs, COMMANDS[command][0])
    return spec


def spec_from_args(args: argparse.Namespace) -> Spec:
    """The command's spec, from the arguments given (a missing one takes the field default)."""
    spec = _spec_class(args.command)
    given = {name: value for name, value in vars(args).items() if name in spec.model_fields}
    return spec.parse(**{name: value for name, value in given.items() if value is not None})


def _add_output_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print the result as one JSON object, last on stdout"
    )
    chatter = command.add_mutually_exclusive_group()
    chatter.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines or download bar on stderr"
    )
    chatter.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's and MLflow's logs too"
    )


class _DropRunFailures(logging.Filter):
    """Keep the console free of Prefect's failure reports: the CLI reports the failure itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        )


class _ProgressLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The steps' progress lines (taxi_duration.flows.progress) alone, on stderr."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        from taxi_duration.flows.progress import PROGRESS

        self.addFilter(lambda record: bool(getattr(record, PROGRESS, False)))


def _configure_runtime(output: argparse.Namespace) -> None:
    verbose, quiet = output.verbose, output.quiet
    # Set before Prefect is imported; a user's own setting wins.
    # A loaded 2-core machine can take more than Prefect's 20 s to start the ephemeral server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "WARNING"
    )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if verbose else "false")
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    if quiet:  # a terminal's download bar too
        os.environ["TAXI_DURATION_PROGRESS_BAR"] = "false"
    elif not verbose:  # with -v, Prefect's own console handler shows the progress lines
        logging.getLogger().addHandler(_ProgressLines())
    if not verbose:
        # Each of MLflow's HTTP retries is a urllib3 warning; the CLI reports the outcome.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        # Prefect's services draining their queues at exit on a busy machine warn "Still
        # processing items" (after a failed run's one error line): progress, not a problem.
        for service in ("EventsWorker", "APILogWorker"):
            logging.getLogger(service).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_DropRunFailures())


def _configure_service_logging(output: argparse.Namespace) -> None:
    """The service's own lines (versions served, failures) on stderr; MLflow's only with -v."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if output.verbose else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    service = logging.getLogger("taxi_duration.serve")
    service.addHandler(handler)
    service.setLevel(
        logging.DEBUG if output.verbose else logging.WARNING if output.quiet else logging.INFO
    )
    if not output.verbose:
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _run(spec: Spec) -> dict[str, Any]:
    from taxi_duration.specs import CacheSpec, PromoteSpec, ServeSpec

    if isinstance(spec, PromoteSpec):  # no flow: a few registry calls
        from dataclasses import asdict

        from taxi_duration.settings import Settings
        from taxi_duration.tracking import registry

        return asdict(registry.set_champion(Settings(), spec.color, str(spec.version)))
    if isinstance(spec, ServeSpec):  # no flow: a server until stopped
        from taxi_duration.serve import PredictionService
        from taxi_duration.settings import Settings

        # -v (_configure_service_logging): a line per request too.
        verbose = logging.getLogger("taxi_duration.serve").isEnabledFor(logging.DEBUG)
        service = PredictionService(spec, Settings(), access_log=verbose)
        service.run()
        return {"url": service.url, "model_name": service.follower.model_name}
    if isinstance(spec, CacheSpec):  # no flow: files in the data folder
        from taxi_duration.cache import PreparedCache, cache_listing
        from taxi_duration.settings import Settings

        return cache_listing(PreparedCache.of(Settings()), spec.action)
    starting = _start_prefect_server()
    run_flow = _flow_call(spec)
    if starting is not None:
        starting.join()
    return run_flow()


def _start_prefect_server() -> threading.Thread | None:
    """Start Prefect's temporary server in the background, when no server is configured.

    It takes seconds to start, about as long as loading the flow and its libraries: the two
    then share the machine's cores instead of waiting for each other. The flow's client finds
    the server running (Prefect keeps one per process); a failure here is left for the
    flow's own start to report.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    # Imported here, not in the thread: two threads importing at once can meet half-imported
    # modules (a warning of urllib3's showed on stderr).
    from prefect.server.api.server import SubprocessASGIServer

    def start() -> None:
        with contextlib.suppress(Exception):
            SubprocessASGIServer().start()

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread


def _flow_call(spec: Spec) -> Callable[[], dict[str, Any]]:
    """The command's flow called on its spec; importing it loads the run's libraries."""
    from taxi_duration.specs import BacktestSpec, MonitorSpec, PredictSpec, TrainSpec, TuneSpec

    if isinstance(spec, BacktestSpec):
        from taxi_duration.flows.backtest import backtest

        backtest_spec = spec

        def run() -> dict[str, Any]:
            try:
                return backtest(backtest_spec).to_dict()
            except BacktestFailedError as failure:  # print every pair, then exit 1
                return dict(failure.summary.to_dict())

        return run
    if isinstance(spec, MonitorSpec):
        from taxi_duration.flows.monitor import monitor

        monitor_spec = spec
        return lambda: monitor(monitor_spec)
    if isinstance(spec, PredictSpec):
        from taxi_duration.flows.predict import predict

        predict_spec = spec
        return lambda: predict(predict_spec).to_dict()
    if isinstance(spec, TuneSpec):
        from taxi_duration.flows.tune import tune

        tune_spec = spec
        return lambda: tune(tune_spec).to_dict()
    from taxi_duration.flows.train import train

    train_spec = typing.cast(TrainSpec, spec)
    return lambda: train(train_spec).to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    for name, value in RUN_ENVIRONMENT_DEFAULTS.items():  # a user's own setting wins
        os.environ.setdefault(name, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "stack":
            from taxi_duration.stack.commands import run as run_stack

            return run_stack(args.action)
        spec = spec_from_args(args)
        if args.command == "serve":  # MLflow, but no Prefect: a service starts in seconds
            _configure_service_logging(args)
        elif args.command != "cache":  # the cache's files need neither Prefect nor MLflow
            _configure_runtime(args)
        result = _run(spec)
    except TaxiDurationError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    from taxi_duration.printers import PRINTERS

    PRINTERS[args.command](result)
    if args.json:
        print(json.dumps(result))
    return 1 if result.get("failed") else 0  # a backtest with failed pairs


if __name__ == "__main__":
    raise SystemExit(main())
