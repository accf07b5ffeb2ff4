"""The single customer view: one profile per person, built from the raw tables as of any date."""

from segone.profiles.build import BuildResult, build, profiles_expr

__all__ = ["BuildResult", "build", "profiles_expr"]
