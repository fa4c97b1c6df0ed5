"""One module per command; each takes plain arguments and returns a result or an exit code."""
