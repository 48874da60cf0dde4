"""The command line: `revgm COMMAND` (`main.py`), its commands (`parse.py`, `classify.py`,
`prepare.py`) and the absl flag helpers every entry point shares (`cli_flags.py`). Empty
itself: importing the flag helpers loads no command."""
