"""Party processes: each one does one measured job and prints JSON lines (`bench.child`)."""
