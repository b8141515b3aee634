"""spark-submit entry point for `unisem validate` (same arguments, same exit codes); the logic is in unisem/.

    spark-submit --master spark://host:7077 jobs/validate.py --catalog C --interactions I --out DIR [--config Y]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when unisem is not installed

from unisem.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
