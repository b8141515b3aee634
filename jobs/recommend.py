"""spark-submit entry point for `unisem recommend-all` (same arguments, same exit codes); the logic is in unisem/.

    spark-submit --master spark://host:7077 jobs/recommend.py --features F --out DIR --run-id R [--published P] [--config Y]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when unisem is not installed

from unisem.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["recommend-all", *sys.argv[1:]]))
