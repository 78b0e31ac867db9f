"""`python -m pacim` runs the command line."""

from .cli import main

main(prog_name="pacim")
