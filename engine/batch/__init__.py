"""Batch jobs (`python -m engine batch JOBS.jsonl`): one JSONL line per job command, checked as the server
checks a request, run in-process or on Ray actors that keep their prior loaded, resumable by content-derived job ids.
May import commands/, serve/ (its admission checks, out-of-memory reply and Ray support) and everything below;
never cli/."""
