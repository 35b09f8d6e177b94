"""Hostile-input regressions: one test (or more) per item of issue 18's table; loopback only, bounded."""
