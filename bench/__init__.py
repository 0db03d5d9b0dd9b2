"""Benchmarks: where the app stands against the tutorial's way and against the physical limit.

Run everything with one command (see bench/run.py):

    ./.venv/bin/python -m bench.run            # full size, < 15 min on 2 cores; writes bench/results/latest.*
    ./.venv/bin/python -m bench.run --quick    # smaller sizes, a few minutes; writes .devstack/bench/

Every item compares against its baseline in the same run, side by side, and reports medians.
Never deployed (.funcignore).
"""
