"""`python -m kubexp.cli`: the `kubexp` command where its console script is not installed (the Docker image)."""

from kubexp.cli import main

if __name__ == "__main__":
    main(prog_name="kubexp")
