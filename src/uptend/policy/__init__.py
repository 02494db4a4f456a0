"""Pure decisions: settings and counts in, a decision out; no I/O, no clock."""
