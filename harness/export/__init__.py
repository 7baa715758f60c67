"""Exports of finished experiments to other tools (MLflow: the optional [mlflow] extra)."""
