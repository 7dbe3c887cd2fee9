"""Local tooling: private RabbitMQ nodes for `make run`, the tests and the benchmarks.

Never part of the runtime packages (the wheel and the image carry none of it).
"""
