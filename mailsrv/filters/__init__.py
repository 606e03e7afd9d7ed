"""Checks on incoming mail: each filter reports, the pipeline decides."""
