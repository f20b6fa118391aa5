"""Inline CSS and JavaScript of the data-quality report (package data, read by portal_sync.dq_report)."""
