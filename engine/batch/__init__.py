"""Batch jobs (`python -m engine batch JOBS.jsonl`): one JSONL line per CLI job, run in-process or on Ray actors."""
