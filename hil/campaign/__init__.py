"""Fault-injection campaigns: a TOML spec, injections at model or board level, outcomes with
live confidence intervals, an SQLite store that resumes, and reports (docs/hil.md)."""
