"""A local stand-in for Azure Machine Learning (v2): ARM routes for jobs, model versions, managed online endpoints
and deployments (with ARM's long-running operations), plus the endpoints' scoring URIs.

It is mounted in the classic emulator's process (`tools/emulator/server.py`) under `/azureml`, sharing its storage
account (Azurite), Event Grid topics, fault rules, manifest and managed-identity endpoint. See README.md here and
docs/reference/azureml-rest.md for what each route takes and answers.
"""
