"""Evaluation: notices through the compiled rules into decisions, and replays of archives."""
