"""The `noderr` command line: the third adapter beside `api/` and `noderr_pipelines/`.

One place for every `noderr` command. May import the core, the local stack and the demo.
"""
