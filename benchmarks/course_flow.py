"""The course's Prefect flow, rewritten to run on today's libraries: the baseline of
``end_to_end.py``.

DataTalksClub/mlops-zoomcamp, ``cohorts/2023/03-orchestration/prefect/3.4/orchestrate.py``:
the same tasks (``read_data`` with its retries, ``add_features``, ``train_best_model``) in a
flow, the same steps and parameters, MLflow logging of the run, the preprocessor and the
model on a sqlite store in the working folder. Changed only where today's libraries refuse
the original: ``reg:squarederror`` for the removed ``reg:linear`` alias,
``root_mean_squared_error`` for ``mean_squared_error(squared=False)``, ``name=`` for
MLflow 3's ``log_model``, plain return annotations.

    python benchmarks/course_flow.py TRAIN.parquet VAL.parquet
"""

from __future__ import annotations

import pathlib
import pickle
import sys
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from prefect import flow, task
from sklearn.feature_extraction import DictVectorizer
from sklearn.metrics import root_mean_squared_error


@task(retries=3, retry_delay_seconds=2)
def read_data(filename: str) -> pd.DataFrame:
    """Read data into DataFrame"""
    df = pd.read_parquet(filename)

    df.lpep_dropoff_datetime = pd.to_datetime(df.lpep_dropoff_datetime)
    df.lpep_pickup_datetime = pd.to_datetime(df.lpep_pickup_datetime)

    df["duration"] = df.lpep_dropoff_datetime - df.lpep_pickup_datetime
    df.duration = df.duration.apply(lambda td: td.total_seconds() / 60)

    df = df[(df.duration >= 1) & (df.duration <= 60)]

    categorical = ["PULocationID", "DOLocationID"]
    df[categorical] = df[categorical].astype(str)

    return df


@task
def add_features(df_train: pd.DataFrame, df_val: pd.DataFrame) -> tuple[Any, ...]:
    """Add features to the model"""
    df_train["PU_DO"] = df_train["PULocationID"] + "_" + df_train["DOLocationID"]
    df_val["PU_DO"] = df_val["PULocationID"] + "_" + df_val["DOLocationID"]

    categorical = ["PU_DO"]
    numerical = ["trip_distance"]

    dv = DictVectorizer()

    train_dicts = df_train[categorical + numerical].to_dict(orient="records")
    x_train = dv.fit_transform(train_dicts)

    val_dicts = df_val[categorical + numerical].to_dict(orient="records")
    x_val = dv.transform(val_dicts)

    y_train = df_train["duration"].values
    y_val = df_val["duration"].values
    return x_train, x_val, y_train, y_val, dv


@task(log_prints=True)
def train_best_model(
    x_train: Any, x_val: Any, y_train: np.ndarray, y_val: np.ndarray, dv: DictVectorizer
) -> None:
    """train a model with best hyperparams and write everything out"""

    with mlflow.start_run():
        train = xgb.DMatrix(x_train, label=y_train)
        valid = xgb.DMatrix(x_val, label=y_val)

        best_params = {
            "learning_rate": 0.09585355369315604,
            "max_depth": 30,
            "min_child_weight": 1.060597050922164,
            "objective": "reg:squarederror",
            "reg_alpha": 0.018060244040060163,
            "reg_lambda": 0.011658731377413597,
            "seed": 42,
        }

        mlflow.log_params(best_params)

        booster = xgb.train(
            params=best_params,
            dtrain=train,
            num_boost_round=100,
            evals=[(valid, "validation")],
            early_stopping_rounds=20,
        )

        y_pred = booster.predict(valid)
        rmse = root_mean_squared_error(y_val, y_pred)
        mlflow.log_metric("rmse", rmse)

        pathlib.Path("models").mkdir(exist_ok=True)
        with open("models/preprocessor.b", "wb") as f_out:
            pickle.dump(dv, f_out)
        mlflow.log_artifact("models/preprocessor.b", artifact_path="preprocessor")

        mlflow.xgboost.log_model(booster, name="models_mlflow")


@flow
def main_flow(train_path: str, val_path: str) -> None:
    """The main training pipeline"""

    # MLflow settings
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("nyc-taxi-experiment")

    # Load
    df_train = read_data(train_path)
    df_val = read_data(val_path)

    # Transform
    x_train, x_val, y_train, y_val, dv = add_features(df_train, df_val)

    # Train
    train_best_model(x_train, x_val, y_train, y_val, dv)


if __name__ == "__main__":
    main_flow(sys.argv[1], sys.argv[2])
