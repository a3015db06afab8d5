"""The project's Lightning callbacks: one module each, named like its ``conf/callbacks/<name>.yaml``."""
