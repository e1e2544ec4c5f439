"""Prefect flows for comfy-gen (deployments in prefect.yaml)."""
