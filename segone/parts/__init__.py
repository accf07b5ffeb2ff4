"""The parts ``segone.project.Project`` hands out (``project.segments``, ``project.models``),
each in its own module holding a reference back to the project, in the way Splink's ``Linker``
hands out ``linker.training`` and ``linker.inference``. They hold the queries a command line or
a notebook needs, so that tests reach them and the CLI only parses, calls and renders."""
