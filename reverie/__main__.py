"""`python -m reverie ...` is the same as the `reverie` command (and what torchrun runs)."""

from reverie.cli import main

if __name__ == "__main__":
    main()
