"""`python -m uptend` is the `uptend` command."""

from uptend.cli import main

main()
