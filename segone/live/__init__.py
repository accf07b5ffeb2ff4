"""Live state of one person, updated event by event inside the online store's write transaction.

Pure logic, no I/O of its own (the webhook dispatcher excepted): ``identity`` stitches
identifiers to people at once, ``profile`` keeps the live profile and shows it with the same
columns as the warehouse ``profiles`` table, ``stage`` mirrors the lifecycle rule, ``realtime``
turns two views of a person into transitions (segment entered/left, stage changed, taste shift)
and ``webhooks`` delivers them, signed, with retries and a dead-letter table. ``person.update``
makes the calls for one event in the order the Engine needs them.
"""
