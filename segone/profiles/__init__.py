"""The single customer view: one profile per person, built from the raw tables as of any date.

The features are ``segone.profiles.view``; the build that joins scores and stages to them is
``segone.pipeline.build`` (profiles sit below the pipeline).
"""
