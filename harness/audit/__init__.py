"""Audit: comparing two experiments and verifying one (checks with names and verdicts)."""
