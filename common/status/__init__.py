"""Where is my message: a status store fed by lifecycle events, and its recorder.

`states` (pure: the monotone state machine) · `store` (the interface, one SQL
implementation) · `sqlite` and `postgres` (the two databases) · `recorder` (events queue in,
store out) · `views` (timeline and attempts for people).
"""
