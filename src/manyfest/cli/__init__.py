"""The command-line interface (typer + rich); nothing below this package imports them."""
