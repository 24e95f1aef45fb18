"""What the ``taxi-duration`` commands print: each command's result, read from the dict it
returns (the same object ``--json`` prints), as a person reads it."""

from __future__ import annotations

import sys
from typing import Any


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"Trained {result['model']} on {result['features']} features, "
        f"{result['color']} {result['train_month']}"
        + (f" (window: {result['window']} months ending there)" if result["window"] > 1 else "")
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
    registered = (
        f"{result['model_name']} version {result['model_version']}"
        if result["model_version"]
        else f"not registered, logged as {result['model_uri']}"
    )
    print(f"  model         {registered} ({result['model_size_bytes']:,} bytes)")
    print(f"  MLflow run    {result['run_id']} at {result['tracking_uri']}")
    if result["reused"]:
        print(f"  promotion     none: {result['promotion_reason']}")
    elif result["model_version"]:
        role = "champion" if result["promoted"] else "challenger"
        print(f"  promotion     {role}: {result['promotion_reason']}")
    if result.get("best_params"):
        print(f"  tuning        best of {result['n_trials']} trials: {result['best_params']}")
    steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result["timings"].items())
    print(f"  timings       {steps}")


def print_monitoring(result: dict[str, Any]) -> None:
    if "months" in result:  # --from/--to
        print(
            f"Champion version {result['model_version']} of {result['color']} (validation RMSE "
            f"{result['validation_rmse']:.4f}), month by month:"
        )
        for month in result["months"]:
            if "skipped" in month:
                print(f"  {month['month']}  skipped: {month['skipped']}")
                continue
            verdict = "degraded" if month["degraded"] else "ok"
            print(
                f"  {month['month']}  rmse {month['rmse']:.4f} ({month['degradation']:+.1%}), "
                f"drifted {len(month['drifted_columns'])} of {len(month['drift'])}: {verdict}"
            )
        print(f"  decay chart: MLflow run {result['chart_run_id']}, charts/decay.png")
        return
    verdict = "degraded" if result["degraded"] else "not degraded"
    print(
        f"Champion version {result['model_version']} on {result['month']} "
        f"({result['rows']:,} trips): {verdict}"
    )
    for line in result["lines"]:
        print(f"  {line}")


def print_prediction(result: dict[str, Any]) -> None:
    print(
        f"Scored {result['rows_scored']:,} trips of {result['color']} {result['month']} with "
        f"{result['model_uri']} (version {result['model_version']}); "
        f"{result['rows_without_prediction']:,} without a prediction"
    )
    print(f"  wrote {result['output']}")


def print_promotion(result: dict[str, Any]) -> None:
    def scored(version: str | None, rmse: float | None, month: str | None) -> str:
        if version is None:
            return "none"
        return f"v{version} (validation RMSE " + (
            f"{rmse:.4f} on {month})" if rmse is not None else "not recorded)"
        )

    print(
        f"{result['model_name']}@champion is now "
        f"{scored(result['version'], result['rmse'], result['val_month'])}, "
        f"was {scored(result['previous'], result['previous_rmse'], result['previous_val_month'])}"
    )


def print_backtest(result: dict[str, Any]) -> None:
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


def print_cache(result: dict[str, Any]) -> None:
    verb = "Removed" if result["action"] == "clear" else "Cached"
    count = len(result["entries"])
    print(
        f"{verb} {count} prepared month{'' if count == 1 else 's'}, "
        f"{gigabytes(result['total_bytes'])} (bound {gigabytes(result['max_bytes'])}) "
        f"in {result['root']}"
    )
    for entry in result["entries"]:
        size = gigabytes(entry["size"])
        print(f"  {entry['source']:<34} {size:>9}  last used {entry['last_used']}")


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def print_stopped(result: dict[str, Any]) -> None:
    print(f"Stopped serving {result['model_name']} on {result['url']}")


PRINTERS = {
    "train": print_summary,
    "tune": print_summary,
    "monitor": print_monitoring,
    "serve": print_stopped,
    "cache": print_cache,
    "predict": print_prediction,
    "promote": print_promotion,
    "backtest": print_backtest,
}
