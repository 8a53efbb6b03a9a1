"""Repeatable performance figures, each as a ratio to a baseline measured in the same run on the same machine.

Every measurement is a function that returns its figures as a plain dict (so a later report can reuse it);
`python -m benchmarks.redirect` is the command line for the redirect benchmark.
"""
