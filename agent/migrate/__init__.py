"""`aistack migrate`: take over a running compose stack with all its data.

cli.py reads the project and the options -> source.py (what the old stack is: its
containers, data folders, secrets) -> checks.py (refusals before anything changes) ->
run.py (the steps, each recorded in state.py's journal so a rerun continues) with
manifest.py (what the data holds, before and after) and copy.py (a resumable copy).
"""
