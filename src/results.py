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


# options whose value may start with "-" (`--sort -test_acc`): argparse would take it for an option
DASH_VALUED = ("--sort",)


def attach_dash_values(argv: list[str]) -> list[str]:
    """``--sort -test_acc`` -> ``--sort=-test_acc``, which argparse reads as the option's value."""
    joined: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in DASH_VALUED:
            value = next(args, None)
            joined.append(arg if value is None else f"{arg}={value}")
        else:
            joined.append(arg)
    return joined


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
    parser.add_argument(
        "--baseline",
        action="append",
        metavar="KEY=VALUE",
        help="compare every row with the row whose runs have KEY=VALUE (e.g. model.batch_norm=true or "
        "model=smallcnn): difference, 95%% CI, Welch / paired t-test, Holm, verdict; repeat to narrow down",
    )
    parser.add_argument(
        "--test",
        choices=("welch", "paired"),
        default="welch",
        help="the test the verdict reads: Welch's (default), or the paired t-test where a row ran the "
        "baseline's seeds / folds (both p-values are always shown)",
    )
    parser.add_argument(
        "--curves", action="store_true", help="also write curves.png: validation accuracy and loss per epoch"
    )
    parser.add_argument(
        "--band",
        choices=("minmax", "std"),
        default="minmax",
        help="the band around each curve: min-max over the runs (default) or +-1 std",
    )
    args = parser.parse_args(attach_dash_values(sys.argv[1:] if argv is None else list(argv)))

    from cnnlab.errors import exit_on_user_error
    from cnnlab.results.table import results_table

    if args.doc:
        from cnnlab.results.reference_doc import write_reference_doc

        with exit_on_user_error():
            print(f"wrote {write_reference_doc(args.dirs[0], args.doc)}")

    def split(value: str | None) -> list[str] | None:
        return [item.strip() for item in value.split(",") if item.strip()] if value else None

    with exit_on_user_error():
        text, out = results_table(
            args.dirs,
            by=split(args.by),
            sort=split(args.sort),
            out_dir=args.out,
            baseline=args.baseline,
            test=args.test,
            curves=args.curves,
            band=args.band,
        )
    print(text)
    extra = " and curves.png" if args.curves else ""
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}{extra}")


if __name__ == "__main__":
    main()
