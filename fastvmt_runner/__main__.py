"""``python -m fastvmt_runner ...`` (from the pack's folder): the headless runner."""
from .cli import main

if __name__ == "__main__":
    main(prog="python -m fastvmt_runner")
