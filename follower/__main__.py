"""`python -m follower` is the same as the `follower` console script."""

from follower.cli.entry import main

if __name__ == "__main__":
    main()
