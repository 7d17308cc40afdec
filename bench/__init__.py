"""imagegate's benchmark suite: each figure as a ratio against a baseline measured in the same run.

Run it with `python -m bench` from the checkout (see docs/benchmarks.md). One module per
figure (`pods`, `startup`, `rebuild`, `digest`, `classify_log`, `render_lint`), each with a
`figures(...)` function returning `bench._measure.Figure`s; `bench.run` prints them and exits
non-zero when a target is missed. Machines here are shared and noisy, so no target is an
absolute time measured alone: every timing is compared with a baseline taken in the same run.
"""
