"""hopline benchmarks: `python -m bench` (or `make bench`).

Every hopline figure is printed next to a reference measured in the same run, on the same
private RabbitMQ node, with the same queue type, message size and prefetch.
"""
