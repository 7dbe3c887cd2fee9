"""The operator domain: quarantined and unroutable messages, looked at and moved by a person.

Used by the `hopline quarantine|unroutable` CLI and the producer's admin API alike:

    failed      a failed message as an operator sees it (pure parsing, whose reason wins)
    archive     its JSON-lines archive form
    selection   filters and groups (pure)
    replays     the copies that take a message back (replay, forward)
    moves       what a sweep does with each message: look, drop, archive, copy
    sweep       one pass over a queue (`QueueSweep`): take, move, hand back
    management  the management API, to find every service's quarantine queue
    operations  what the CLI and the admin API share (`Operator`)
"""
