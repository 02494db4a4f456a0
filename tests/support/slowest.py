"""The test files that take longest, longest first: `pytest -n N --dist loadfile` starts them first.

xdist hands out whole files; by default the ones with the most tests go first, so a file of a
few long end-to-end tests could start last and keep one worker busy after the others are done.
tests/conftest.py moves these files to the front of the collection and scripts/test passes
`--no-loadscope-reorder`, so they start first. Measured with `--durations=0` (per-file sums);
a file missing from the list only starts later, it still runs.

Measured per file (sum of setup, call and teardown) on the 2-core machine with four other
engineers' suites running beside (load 10-16), `-n 2 --dist loadfile`, 2026-12-01:
seconds after the zygote and in-process CLI (tests/support/zygote.py, inproc.py).
The rollout files are not ours to change (another branch works on them); measured the same way.
"""

SLOWEST_FIRST: tuple[str, ...] = (
    "tests/e2e/test_rollouts.py",  # 609 s: 200 simulated hosts, many rounds, both dialects
    "tests/server/test_credentials.py",  # 508 s (CLI processes of its own, both dialects)
    "tests/server/test_admin_cli.py",  # 410 s
    "tests/e2e/test_hostile.py",  # 376 s (alone at -n 0 beside the tree before: 175 s, 287 s)
    "tests/agent/test_self_update_trial.py",  # 369 s, the first to need the builds
    "tests/e2e/test_schedule.py",  # 357 s
    "tests/e2e/test_pins.py",  # 295 s
    "tests/agent/test_self_update_kill9.py",  # five kills in two self-updates
    "tests/agent/test_self_update_rollout.py",  # two installed agents
    "tests/agent/test_self_update_fallback.py",
    "tests/agent/test_self_update.py",  # 256 s
    "tests/agent/test_crash_safety.py",
    "tests/e2e/test_keys.py",  # 183 s
    "tests/e2e/test_agent_credentials.py",  # 164 s
    "tests/e2e/test_agent_loop.py",  # 120 s
    "tests/e2e/test_rollouts_replicas.py",  # 97 s: 60 hosts on two servers
    "tests/e2e/test_disk_full.py",  # 94 s
    "tests/e2e/test_update.py",  # 87 s
    "tests/e2e/test_config.py",  # 85 s
    "tests/e2e/test_commands_replicas.py",  # 78 s
    "tests/e2e/test_deb.py",  # 74 s
    "tests/e2e/test_apt_repo.py",  # 71 s
    "tests/e2e/test_commands.py",  # 70 s
    "tests/e2e/test_rpm.py",  # 66 s
)
