"""`python -m results DIR [DIR ...]`: the results table of the runs under run / multirun directories."""

from __future__ import annotations

import argparse
import sys


def archive_main(argv: list[str]) -> None:
    """`python -m results archive RUN_DIR DEST`: publish a finished run (see cnnlab.runs.archive)."""
    parser = argparse.ArgumentParser(
        prog="python -m results archive",
        description="Copy a finished run into DEST without bulk: record, config, CSV curves, evaluation "
        "files and figures, and a weights-only model.ckpt that evaluate and predict accept.",
    )
    parser.add_argument("run_dir", help="a finished run directory (holds metrics.json)")
    parser.add_argument("dest", help="the archive folder, e.g. docs/runs/smallcnn-cifar10-seed0")
    parser.add_argument("--no-weights", action="store_true", help="leave the weights-only checkpoint out")
    parser.add_argument("--overwrite", action="store_true", help="replace what DEST holds")
    args = parser.parse_args(argv)

    from cnnlab.errors import exit_on_user_error
    from cnnlab.runs.archive import archive_run, archive_size

    with exit_on_user_error():
        dest = archive_run(args.run_dir, args.dest, weights=not args.no_weights, overwrite=args.overwrite)
    print(f"archived {args.run_dir} -> {dest} ({archive_size(dest) / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["archive"]:
        archive_main(argv[1:])
        return
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
    parser.add_argument(
        "--doc",
        help="also write this Markdown page from the runs: the table, headline figures computed from the "
        "records and each run's command (e.g. --doc docs/results.md)",
    )
    args = parser.parse_args(argv)

    from cnnlab.errors import exit_on_user_error
    from cnnlab.results import results_table

    if args.doc:
        from cnnlab.reference_doc import write_reference_doc

        with exit_on_user_error():
            print(f"wrote {write_reference_doc(args.dirs[0], args.doc)}")

    def split(value: str | None) -> list[str] | None:
        return [item.strip() for item in value.split(",") if item.strip()] if value else None

    with exit_on_user_error():
        text, out = results_table(args.dirs, by=split(args.by), sort=split(args.sort), out_dir=args.out)
    print(text)
    print(f"wrote {out / 'results.md'} and {out / 'results.csv'}")


if __name__ == "__main__":
    main()
