"""The batch pipeline, the top of the batch path: resolve → features → models → publish, and
segment history over a date range. ``segone.project.Project`` is the facade that calls it."""
