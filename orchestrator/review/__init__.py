"""Review: TensorBoard (the driver's side), the report, live progress, run names, evaluation, MLflow tracking."""
