"""Take the screenshots of docs/deploying.md from a running stack (see that page).

    .venv/bin/python scripts/docs_screenshots.py [--prefect http://127.0.0.1:4200]
        [--mlflow http://127.0.0.1:5000] [--out docs/img]

Expects what docs/deploying.md walks through: the deployments, a completed run of
``train/monthly`` with explicit months, and (for the fallback log) one started "at" a date
whose newest month is not published.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot import shoot


def mlflow_page(route: str) -> str:
    """A script that switches MLflow's UI to its model-training mode (a setting of the
    browser, not of the experiment), opens ``route`` and closes the assistant panel."""
    return (
        "(async () => { const sleep = ms => new Promise(r => setTimeout(r, ms));"
        " const mode = Array.from(document.querySelectorAll('button, label, span, div')).filter("
        "e => e.children.length === 0 && e.textContent.trim() === 'Model training');"
        " if (mode.length) mode[0].click(); await sleep(3000);"
        f" location.hash = '#{route}'; await sleep(12000);"
        " const b = document.querySelector('button[aria-label=Close]'); if (b) b.click();"
        " await sleep(1000); return mode.length; })()"
    )


SCROLL_TO_SCHEDULED_MONTHS = (
    "(() => { const hits = Array.from(document.querySelectorAll('*')).filter("
    "e => e.children.length === 0 && e.textContent.includes('scheduled months'));"
    " if (hits.length) hits[0].scrollIntoView({block: 'center'}); return hits.length; })()"
)


def post(url: str, body: dict[str, Any]) -> Any:
    response = httpx.post(url, json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def get(url: str, **params: Any) -> Any:
    response = httpx.get(url, params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--prefect", default="http://127.0.0.1:4200")
    parser.add_argument("--mlflow", default="http://127.0.0.1:5000")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    ui, api, mlflow = args.prefect, f"{args.prefect}/api", args.mlflow
    args.out.mkdir(parents=True, exist_ok=True)

    deployment = get(f"{api}/deployments/name/train/monthly")
    runs = post(
        f"{api}/flow_runs/filter",
        {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            "sort": "START_TIME_ASC",
        },
    )
    explicit = next(run for run in runs if run["parameters"].get("year"))
    scheduled = next((run for run in runs if not run["parameters"].get("year")), None)
    [artifact] = post(
        f"{api}/artifacts/filter",
        {
            "artifacts": {
                "flow_run_id": {"any_": [explicit["id"]]},
                "key": {"any_": ["train-summary"]},
            }
        },
    )
    match = re.search(r"MLflow run \| `([0-9a-f]{32})`", artifact["data"])
    assert match, artifact["data"]
    mlflow_run = get(f"{mlflow}/api/2.0/mlflow/runs/get", run_id=match.group(1))["run"]
    experiment_id = mlflow_run["info"]["experiment_id"]

    shots: list[tuple[str, str, str | None]] = [
        ("prefect-deployment.png", f"{ui}/deployments/deployment/{deployment['id']}", None),
        ("prefect-custom-run.png", f"{ui}/deployments/deployment/{deployment['id']}/run", None),
        ("prefect-flow-run.png", f"{ui}/runs/flow-run/{explicit['id']}", None),
        ("prefect-train-summary.png", f"{ui}/artifacts/artifact/{artifact['id']}", None),
    ]
    run_route = f"/experiments/{experiment_id}/runs/{match.group(1)}"
    for name, route in [
        ("mlflow-run.png", run_route),
        ("mlflow-run-charts.png", f"{run_route}/artifacts/charts/learning_curve.png"),
        ("mlflow-model.png", "/models/nyc-taxi-duration-green"),
    ]:
        shots.append((name, f"{mlflow}/#/", mlflow_page(route)))
    if scheduled is not None:
        shots.append(
            (
                "prefect-scheduled-run-logs.png",
                f"{ui}/runs/flow-run/{scheduled['id']}",
                SCROLL_TO_SCHEDULED_MONTHS,
            )
        )
    for name, url, script in shots:
        shoot(url, args.out / name, 1400, 900, 8.0, script)


if __name__ == "__main__":
    main()
