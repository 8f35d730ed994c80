"""The job-site case, end to end: generated policy, consent and events, and the report."""
