"""The test files that take longest, longest first: `pytest -n N --dist loadfile` starts them first.

xdist hands out whole files; by default the ones with the most tests go first, so a file of a
few long end-to-end tests could start last and keep one worker busy after the others are done.
tests/conftest.py moves these files to the front of the collection and scripts/test passes
`--no-loadscope-reorder`, so they start first. Measured with `--durations=0` (per-file sums);
a file missing from the list only starts later, it still runs.
"""

SLOWEST_FIRST: tuple[str, ...] = ()
