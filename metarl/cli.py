"""The ``metarl`` command line: ``list``, ``train``, ``sweep``, ``eval`` and ``compare``.

Exit codes: 0 on success, 2 with a one-line message on bad usage, config, checkpoint or
data, 1 on a failure during a run, 130 when interrupted (a checkpoint is written first), 141
(as for SIGPIPE) when the reader of its output goes away first, as ``| head`` does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from metarl.errors import RunFailed, UsageError

_DEVICES = "auto, cpu, cuda, cuda:N or mps (default: the config's train.device)"


def _positive_minutes(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of minutes, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metarl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the named experiments")

    train = sub.add_parser("train", help="train an experiment")
    train.add_argument("experiment", nargs="?", help="experiment name or path to a YAML config")
    train.add_argument("--out", help="run folder (default runs/NAME-TIMESTAMP)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. ppo.lr=1e-3",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--backend", choices=["local", "ray"])
    train.add_argument("--workers", type=int, help="Ray rollout actors")
    train.add_argument("--ray-address", help="join a Ray cluster ('auto' or HOST:PORT)")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    train.add_argument(
        "--time-limit",
        type=_positive_minutes,
        metavar="MINUTES",
        help="stop cleanly after this many minutes",
    )
    train.add_argument("--data-dir", help="few-shot: dataset folder (default $METARL_DATA)")
    train.add_argument("--device", help=f"where the learner trains: {_DEVICES}")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    sw = sub.add_parser("sweep", help="train a grid of configurations x seeds on Ray Tune")
    sw.add_argument("experiment", help="experiment name or path to a YAML config")
    sw.add_argument(
        "--set",
        dest="grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values to sweep (one value: a fixed override), e.g. ppo.lr=1e-3,3e-3",
    )
    sw.add_argument("--seeds", type=int, default=1, help="seeds per configuration")
    sw.add_argument("--out", help="sweep folder (default runs/NAME-sweep-TIMESTAMP)")
    sw.add_argument("--parallel", type=int, help="trials at once (default: one per CPU)")
    sw.add_argument("--time-limit", type=_positive_minutes, metavar="MINUTES", help="per trial")
    sw.add_argument("--ray-address", default="", help="run the trials on a Ray cluster")
    sw.add_argument("--device", help=f"where each trial's learner trains: {_DEVICES}")

    ev = sub.add_parser("eval", help="evaluate a run (or a sweep) on held-out tasks")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, help="held-out tasks (default: the config's)")
    ev.add_argument("--ways", type=int, help="few-shot: classes per test episode")
    ev.add_argument("--shots", type=int, help="few-shot: support images per class")
    ev.add_argument("--data-dir", help="few-shot: dataset folder (default: the run's)")
    ev.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="override an evaluation setting, e.g. eval.ppo_tasks=10",
    )
    ev.add_argument("--json", action="store_true", help="print eval.json to stdout")
    ev.add_argument("--device", help=f"where the model evaluates: {_DEVICES}")

    cmp = sub.add_parser(
        "compare", help="paired difference of two runs evaluated on the same tasks"
    )
    cmp.add_argument("first", help="run folder (its eval.json) or an eval-*.json file")
    cmp.add_argument("second", help="the same, for the run subtracted")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "list":
        from metarl.config import config_names, describe

        for name in config_names():
            print(f"{name:24s} {describe(name)}")
    elif args.command == "train":
        from metarl.trainer import train

        run = train(
            args.experiment,
            out=args.out,
            overrides=args.overrides,
            seed=args.seed,
            backend=args.backend,
            workers=args.workers,
            ray_address=args.ray_address,
            resume=args.resume,
            time_limit=args.time_limit,
            data_dir=args.data_dir,
            device=args.device,
            progress=not args.no_progress,
        )
        print(
            f"run folder: {run.path} ({run.summary['status']}, "
            f"{run.summary['iterations']} iterations)"
        )
    elif args.command == "sweep":
        from metarl.sweep import summary_table, sweep

        rows = sweep(
            args.experiment,
            args.grid,
            seeds=args.seeds,
            out=args.out,
            parallel=args.parallel,
            time_limit=args.time_limit,
            ray_address=args.ray_address,
            device=args.device,
        )
        print(summary_table(rows))
    elif args.command == "eval":
        from metarl.eval.report import evaluate_run

        report = evaluate_run(
            args.run_dir,
            args.episodes,
            ways=args.ways,
            shots=args.shots,
            data_dir=args.data_dir,
            overrides=args.overrides,
            device=args.device,
        )
        if args.json:
            from metarl.runs import json_text

            print(json_text(report))
        elif "configs" in report:  # a sweep
            print(f"{report['experiment']}: {report['metric']} over {report['episodes']} tasks")
            for config in report["configs"]:
                print(
                    f"  {config['label']:40s} {config['value']:.4f} ± {config['ci95']:.4f} "
                    f"({len(config['seeds'])} seeds)"
                )
        else:
            setting = f" ({report['ways']}-way {report['shots']}-shot)" if "shots" in report else ""
            print(
                f"{report['experiment']}{setting}: {report['metric']} = {report['value']:.4f} "
                f"± {report['ci95']:.4f} over {report['episodes']} held-out tasks"
            )
            paired = report.get("paired", {})
            for name, value in report["baselines"].items():
                line = f"  {name:16s} {value:.4f}"
                if name in paired:  # per task, agent minus this baseline
                    diff, ci95, verdict = (paired[name][k] for k in ("diff", "ci95", "verdict"))
                    line += f"   agent − {name}: {diff:+.4f} ± {ci95:.4f} ({verdict})"
                print(line)
    elif args.command == "compare":
        from metarl.eval.report import compare_runs

        result = compare_runs(args.first, args.second)
        verdict = {"better": f"{args.first} better", "worse": f"{args.second} better"}
        print(
            f"{args.first} − {args.second}: {result['diff']:+.4f} ± {result['ci95']:.4f} "
            f"over {result['tasks']} paired tasks "
            f"({verdict.get(result['verdict'], 'tie: the 95% interval includes 0')})"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``metarl`` console script."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at exit
    except BrokenPipeError:  # not an error: the reader had what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second report
        return 128 + signal.SIGPIPE
    except UsageError as err:
        print(f"metarl: error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:
        print(f"metarl: run failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # the trainer says what was saved; elsewhere nothing was
        print(f"metarl: interrupted: {err or 'nothing was saved'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
