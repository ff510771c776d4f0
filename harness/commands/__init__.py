"""The `bench` commands, one module each; `harness.cli` assembles them into the `main` group.

Shared pieces (one-line errors and exit codes, Ctrl-C handling, option parsing and shared options) are in
`harness.commands.common`. Command modules import only click and `common` at import time: everything heavy is
imported inside the command functions, so `bench --help` stays fast.
"""
