"""`python -m results DIR [DIR ...]`: the results table of the runs under run / multirun directories."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m results",
        description="Collect every metrics.json under the directories into one table (seeds of a "
        "configuration as mean ± std; failed and incomplete runs listed); write results.csv and results.md.",
    )
    parser.add_argument("dirs", nargs="+", help="run or multirun directories (searched recursively)")
    parser.add_argument(
        "--by",
        help="group by these fields, comma-separated, from model,dataset,features,config "
        "(default: all four: runs that differ only in seed form a row)",
    )
    parser.add_argument(
        "--sort", help="sort by these columns, comma-separated; -name sorts descending (e.g. -test_acc)"
    )
    parser.add_argument(
        "--out", help="where to write results.csv / results.md (default: the common parent of DIRS)"
    )
    args = parser.parse_args(argv)

    from cnnlab.errors import exit_on_user_error
    from cnnlab.results import results_table

    def split(value: str | None) -> list[str] | None:
        return [item.strip() for item in value.split(",") if item.strip()] if value else None

    with exit_on_user_error():
        text, out = results_table(args.dirs, by=split(args.by), sort=split(args.sort), out_dir=args.out)
    print(text)
    print(f"wrote {out / 'results.md'} and {out / 'results.csv'}")


if __name__ == "__main__":
    main()
