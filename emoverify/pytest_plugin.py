"""Placeholder: the claims plugin is being written (issue 3)."""
