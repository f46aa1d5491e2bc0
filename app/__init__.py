"""Relational Memory Explorer web server."""
