"""The `azureml` target kind: Azure Machine Learning (v2) as a training service (command jobs) and a serving target
(managed online endpoints: a new deployment per model, smoke-scored, given traffic in steps), through Azure
Resource Manager with the app's Entra identity only."""
