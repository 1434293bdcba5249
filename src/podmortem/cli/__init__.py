"""The command line: thin commands over the library. This is the only layer that catches
podmortem errors and chooses exit codes."""
