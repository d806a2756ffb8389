"""The ``medcam-dicom`` command line: thin argument parsing over the layers below."""

from __future__ import annotations

import argparse
import sys
import time

from medcam_dicom import __version__


def _medcam_overrides(args: argparse.Namespace) -> dict:
    """MedCAMConfig fields set by ``--max-steps`` (which also caps ``min_steps``) and ``--seed``."""
    from medcam_dicom.explain.config import MedCAMConfig

    overrides = {}
    if getattr(args, "max_steps", None) is not None:
        overrides["max_steps"] = args.max_steps
        overrides["min_steps"] = min(MedCAMConfig().min_steps, args.max_steps)
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    for item in getattr(args, "set", None) or []:
        setting = _setting(item)
        if "weights" in setting:  # several weights.NAME settings add up
            setting = {"weights": {**overrides.get("weights", {}), **setting["weights"]}}
        overrides.update(setting)
    return overrides


def _setting(item: str) -> dict:
    """``--set KEY=VALUE`` as ``{KEY: VALUE}``: VALUE is read as JSON (numbers, lists, objects) or else
    taken as a string; ``weights.NAME=VALUE`` sets one loss weight."""
    import json

    key, separator, text = item.partition("=")
    if not separator or not key:
        raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if key.startswith("weights."):
        return {"weights": {key.removeprefix("weights."): value}}
    return {key: value}


def _config(args: argparse.Namespace, amortized: bool = False):
    """The MedCAMConfig of ``--set``/``--max-steps``/``--seed`` on top of the defaults (``amortized``: of
    :meth:`MedCAMConfig.amortized`, the amortised explainer's training defaults)."""
    from medcam_dicom.explain.config import MedCAMConfig

    try:
        # a partial "weights" dict keeps the other defaults
        return (MedCAMConfig.amortized if amortized else MedCAMConfig)(**_medcam_overrides(args))
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--set: {error}") from error


def _faithful_cell(explanation) -> str:
    """The table's verdict: kept or not, and a warning when random regions of that size keep it too."""
    if not explanation.faithful:
        return "[red]NO[/]"
    if explanation.specific is False:
        return f"[yellow]yes, not specific ({100 * explanation.random_keep:.0f}% of random regions too)[/]"
    return "yes"


def _demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from medcam_dicom.benchmark.demo import run_demo

    rows = run_demo(args.out, tuple(args.datasets), args.images, _config(args))
    table = Table(title="Med-CAM demo")
    for column in ("image", "true", "explained", "p", "p masked", "faithful", "area", "IoU", "steps", "s"):
        table.add_column(column)
    for row in rows:
        iou = row.get("iou_with_lesion")
        table.add_row(f"{row['dataset']} #{row['index']}", row["true_class"], row["explained_class"],
                      f"{row['probability']:.3f}", f"{row['masked_probability']:.3f}", str(row["faithful"]),
                      f"{row['area_fraction']:.3f}", "-" if iou is None else f"{iou:.2f}", str(row["steps"]),
                      f"{row['seconds']:.1f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"Pictures and summary.json written to {args.out}/")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from medcam_dicom.benchmark.run import print_report, run_benchmark

    datasets = tuple(args.datasets) if args.datasets else None
    report = run_benchmark(datasets, args.images, tuple(args.methods), _config(args), args.arch,
                           args.out, cross_check=not args.no_quantus, variant=args.variant,
                           group=args.classifiers, split=args.split, zoo_archs=tuple(args.zoo_archs),
                           baseline_area=args.baseline_area, amortized_prune=args.amortized_prune,
                           zoo_explainers=args.zoo_explainers)
    print_report(report)
    print(f"Table written to {args.out}/benchmark.json, gallery to {args.out}/gallery.png")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import json
    import warnings
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from medcam_dicom.dicom.examples import example_inputs, write_lesion_examples
    from medcam_dicom.dicom.pipeline import explain_series
    from medcam_dicom.dicom.read import scan_inputs
    from medcam_dicom.dicom.settings import OutputSettings
    from medcam_dicom.models.description import DEFAULT_MODELS, load_description
    from medcam_dicom.models.loading import load_model

    warnings.filterwarnings("ignore", category=UserWarning, module=r"(pydicom|highdicom)(\.|$)")
    console = Console(width=160)
    settings = OutputSettings(uid_root=args.uid_root or OutputSettings.uid_root,
                              content_qualification=args.content_qualification, overlays=args.overlays,
                              parametric_map=args.parametric_map)
    descriptions = [load_description(name) for name in (args.model or DEFAULT_MODELS)]
    overrides = _medcam_overrides(args)
    models = [load_model(d.with_medcam(**overrides) if overrides else d, args.device) for d in descriptions]
    paths = list(args.paths)
    if args.examples:
        paths += write_lesion_examples(Path(args.out) / "example-inputs") + example_inputs()
    if not paths:
        raise ValueError("explain needs DICOM files or folders (or --examples)")
    scan = scan_inputs(paths)
    for path, reason in scan.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    for path, reason in scan.failed:
        console.print(f"[red]failed[/] {path}: {reason}")
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("series", total=len(scan.series))
        current = progress.add_task("decisions", total=None)

        def on_progress(done: int, total: int, label: str) -> None:
            progress.update(current, completed=done, total=total, description=f"  {label}")

        for instances in scan.series.values():
            progress.reset(current, total=None, description="  reading")
            results.append(explain_series(instances, args.out, models, settings, on_progress))
            progress.advance(overall)
    table = Table(title="Med-CAM evidence")
    for column in ("series", "model", "class", "p", "p evidence", "faithful", "area", "outputs / reason"):
        table.add_column(column, overflow="fold")
    for result in results:
        if result.status != "explained":
            table.add_row(result.label, result.model or "-", "-", "-", "-", "-", "-",
                          f"[{'yellow' if result.status == 'skipped' else 'red'}]{result.status}: {result.reason}[/]")
            continue
        where = str(result.outputs[0].parent) if result.outputs else "-"
        for number, item in enumerate(result.evidence):
            table.add_row(result.label if number == 0 else "", result.model if number == 0 else "", item.class_name,
                          f"{item.explanation.probability:.3f}", f"{item.explanation.masked_probability:.3f}",
                          _faithful_cell(item.explanation), f"{100 * item.area_fraction:.1f}%",
                          f"{len(result.outputs)} files in {where}" if number == 0 else "")
        for note in result.notes:
            table.add_row("", "", "", "", "", "", "", f"[yellow]note: {note}[/]")
    console.print(table)
    summary = {"results": [r.summary() for r in results], "skipped_files": scan.skipped, "failed_files": scan.failed}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    failed = [r for r in results if r.status == "failed"]
    console.print(f"{sum(r.status == 'explained' for r in results)} series explained, "
                  f"{sum(r.status == 'skipped' for r in results)} skipped, {len(failed)} failed, "
                  f"{len(scan.failed)} unreadable files; summary in {args.out}/summary.json")
    return 1 if failed or scan.failed else 0


SERVICE_FLAGS = (
    ("--ae-title", str, "our AE title (default MEDCAM)"),
    ("--bind", str, "address to listen on (default 127.0.0.1)"),
    ("--port", int, "DICOM port (default 11112)"),
    ("--spool", str, "spool folder for received studies, jobs and results"),
    ("--destination", str, "where results go: AE@HOST:PORT"),
    ("--allow", str, "calling AE titles accepted, comma-separated (default: any)"),
    ("--allow-hosts", str, "peer addresses accepted, comma-separated (default: any)"),
    ("--stable-seconds", float, "quiet period after the last association before a study is explained"),
    ("--max-associations", int, "concurrent associations"),
    ("--max-study-bytes", int, "largest study accepted"),
    ("--max-instance-bytes", int, "largest instance accepted"),
    ("--workers", int, "explainer worker threads in this process (0: remote workers only)"),
    ("--queue-url", str, "'sqlite' (embedded, default) or redis://host:port/db"),
    ("--device", str, "torch device: cpu, cuda or cuda:N (default: cuda when available)"),
    ("--threads", int, "torch CPU threads of this process (default: the cores shared out among its workers)"),
    ("--tls-certificate", str, "PEM certificate: enables TLS"),
    ("--tls-key", str, "PEM private key of the certificate"),
    ("--tls-ca", str, "PEM CA: require client certificates signed by it (mutual TLS)"),
    ("--uid-root", str, "prefix of new UIDs, ending with '.'"),
    ("--overlays", str, "'findings' (default): only findings get a SEG and SC; 'all': every decision"),
    ("--parametric-map", str, "true: also write the soft mask as a Parametric Map (heat map); default false"),
    ("--send-retries", int, "delivery attempts after the first"),
    ("--send-backoff-seconds", float, "first retry delay; doubles each attempt"),
    ("--http-port", int, "health/metrics HTTP port on --bind (0: off)"),
    ("--payload-port", int, "Redis queue: port on --bind of the channel remote workers fetch studies from"),
    ("--serve-url", str, "worker on a Redis queue: the serve node's channel, http(s)://host:payload-port"),
    ("--worker-name", str, "worker: its name in status and logs (default host-pid)"),
    ("--lease-seconds", float, "Redis queue: how long a worker's claim on a job lives unrenewed (default 30)"),
    ("--max-leases", int, "Redis queue: a job leased this often without finishing is failed (default 5)"),
)


def _service_config(args: argparse.Namespace):
    from medcam_dicom.service.config import load_config

    overrides = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"), None) for flag, _, _ in
                 SERVICE_FLAGS}
    overrides["models"] = tuple(args.model) if getattr(args, "model", None) else None
    return load_config(args.config, overrides)


def _serve(args: argparse.Namespace) -> int:
    from medcam_dicom.service.app import Service
    from medcam_dicom.service.logs import configure_logging

    configure_logging()
    service = Service(_service_config(args))
    service.start()
    service.install_signal_handlers()
    service.wait()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from medcam_dicom.service.logs import configure_logging, log_event
    from medcam_dicom.service.spool import Spool
    from medcam_dicom.service.worker import JobRunner, apply_thread_budget, make_queue, register_task

    configure_logging()
    config = _service_config(args)
    threads = apply_thread_budget(config)
    log_event("worker started", workers=max(1, config.workers), torch_threads=threads, device=config.device,
              queue=config.queue_url, spool=str(config.spool), serve_url=config.serve_url)
    if config.queue_url != "sqlite":  # Redis: leases, studies over the payload channel, nothing shared
        import signal
        import threading

        from medcam_dicom.service.lease_worker import run_workers

        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        run_workers(config, stop)
        log_event("worker stopped")
        return 0
    queue = make_queue(config)
    register_task(queue, JobRunner(config, Spool(config.spool)))
    queue.create_consumer(workers=max(1, config.workers), worker_type="thread", periodic=False).run()
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from medcam_dicom.service.status import service_status

    status = service_status(_service_config(args))
    if args.json:
        print(json.dumps(status, indent=2))
        return 1 if status["unreadable_jobs"] else 0
    print(f"spool {status['spool']}")
    print("jobs   " + "  ".join(f"{state} {count}" for state, count in status["jobs"].items()))
    print(f"queue  {status['queue_length'] if status['queue_length'] is not None else 'n/a'}")
    print(f"studies still arriving: {status['studies_arriving']}")
    if status["queue_error"]:
        print(f"queue  unavailable: {status['queue_error']}")
    for worker, seen in sorted(status["workers_seen"].items()):
        print(f"worker {worker}, last heard {time.time() - seen:.0f} s ago")
    for lease in status["leases"]:
        print(f"lease  {lease['job']} held by {lease['worker']} since "
              f"{time.strftime('%H:%M:%S', time.localtime(lease['since']))}")
    for error in status["last_errors"]:
        print(f"error  {error['job']} ({error['state']}): {error['error']}")
    for job in status["unreadable_jobs"]:
        print(f"UNREADABLE job {job['job']}, study kept in {job['folder']}: {job['reason']}")
    return 1 if status["unreadable_jobs"] else 0


def _resend(args: argparse.Namespace) -> int:
    import dataclasses

    from medcam_dicom.service.jobs import JobRecordError, JobStore
    from medcam_dicom.service.spool import Spool
    from medcam_dicom.service.worker import JobRunner

    config = _service_config(args)
    if config.destination is None:
        raise ValueError("resend needs a destination (--destination AE@HOST:PORT or the config file)")
    spool = Spool(config.spool)
    store = JobStore(spool)
    try:
        record = store.load(args.job)
    except JobRecordError as error:
        raise ValueError(f"job {args.job} cannot be resent: {error}") from error
    except (KeyError, ValueError) as error:
        raise ValueError(f"no job {args.job} in {spool.root}") from error
    if not record.results:
        raise ValueError(f"job {args.job} has no results to send (state {record.state})")
    with store.exclusive(args.job) as mine:
        if not mine:
            raise ValueError(f"job {args.job} is being worked on; try again later")
        store.reset_sent(args.job)
        record.state, record.attempts = "sending", 0
        store.save(record)
    runner = JobRunner(dataclasses.replace(config, send_retries=0), spool)  # one attempt, then failed again
    delay = runner.run(args.job)
    record = store.load(args.job)
    print(f"job {args.job}: {record.state}, {len(store.sent(args.job))} of {len(record.results)} results accepted "
          f"by {config.destination}")
    if delay is not None or record.state != "delivered":
        print(f"last error: {record.errors[-1] if record.errors else '-'}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from medcam_dicom.benchmark.names import (
        CLASSIFIER_GROUPS,
        DATASETS,
        DEFAULT_METHODS,
        MEDCAM_METHODS,
        METHODS,
        SPLITS,
        VARIANTS,
        ZOO_ARCHS,
        ZOO_ONLY_DATASETS,
    )
    from medcam_dicom.explain.config import PRUNE_CRITERIA

    parser = argparse.ArgumentParser(prog="medcam-dicom", description="Minimal, verified evidence masks "
                                     "(Med-CAM) for medical image classifiers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="explain demo images with the shipped demo classifiers")
    demo.add_argument("--out", default="medcam-demo-output", help="output folder (default: %(default)s)")
    demo.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    demo.add_argument("--images", type=int, default=1,
                      help="images per dataset, lesion first, then normal (default: %(default)s)")
    demo.add_argument("--max-steps", type=int, help="cap on optimisation steps per image")
    demo.add_argument("--seed", type=int)
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("benchmark", help="ground-truth benchmark of Med-CAM (per image and amortised), "
                                "Grad-CAM and occlusion")
    bench.add_argument("--out", default="benchmark-output", help="output folder (default: %(default)s)")
    bench.add_argument("--datasets", nargs="+", choices=DATASETS + ZOO_ONLY_DATASETS,
                       help=f"default: every dataset of the classifiers (demo: {' '.join(DATASETS)}; a zoo group: its "
                            f"2D ones and the zoo-only {' '.join(ZOO_ONLY_DATASETS)})")
    bench.add_argument("--images", type=int, default=20, help="test images per dataset (default: %(default)s)")
    bench.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                       help="amortized / amortized+refine use the shipped amortised explainers (the zoo's: "
                            "its own, trained on first use; scripts/train_zoo.py --explainers); lesion = the "
                            "finding itself as the mask, on the lesion decisions (default: %(default)s)")
    bench.add_argument("--baseline-area", default="medcam", choices=MEDCAM_METHODS,
                       help="the Med-CAM method whose area the ranking methods are cut to (default: %(default)s)")
    bench.add_argument("--amortized-prune", default="none", choices=PRUNE_CRITERIA,
                       help="prune the amortised masks (AmortizedMedCAM.explain(prune=...); default: %(default)s)")
    bench.add_argument("--variant", default="standard", choices=VARIANTS,
                       help="test images: standard, or heldout (a shift nothing was trained on)")
    bench.add_argument("--arch", default="resnet18-small",
                       help="classifier: resnet18-small (shipped) or resnet18 (trained once, cached)")
    bench.add_argument("--max-steps", type=int, help="cap on Med-CAM optimisation steps per image")
    bench.add_argument("--seed", type=int)
    bench.add_argument("--no-quantus", action="store_true", help="skip the quantus cross-check")
    bench.add_argument("--classifiers", default="demo", choices=CLASSIFIER_GROUPS,
                       help="demo: the shipped demo classifier per dataset (--arch); plain: the classifier zoo "
                            "trained without masking (scripts/train_zoo.py); masking: the masking-trained demo "
                            "classifiers as zoo rows; all: both (default: %(default)s)")
    bench.add_argument("--split", default="all", choices=SPLITS,
                       help="with a zoo group: only the tuning part (defaults are chosen there) or the held-out "
                            "part (default: %(default)s)")
    bench.add_argument("--zoo-archs", nargs="+", default=list(ZOO_ARCHS), choices=ZOO_ARCHS,
                       help="with a zoo group: only these architectures (default: all)")
    bench.add_argument("--zoo-explainers", metavar="DIR",
                       help="with a zoo group: read the plain classifiers' amortised explainers from DIR (another "
                            "recipe: scripts/train_zoo.py --explainers --out DIR) instead of zoo/")
    bench.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a MedCAMConfig setting, e.g. --set warm_start=none --set weights.area=50")
    bench.set_defaults(handler=_benchmark)

    explain = commands.add_parser("explain", help="explain DICOM files or folders; write SEG, SC and SR per series")
    explain.add_argument("paths", nargs="*", help="DICOM files or folders (walked recursively)")
    explain.add_argument("--examples", action="store_true",
                         help="also explain example images: a CT slice and a fundus photograph with a synthetic "
                              "lesion (written to OUT/example-inputs/) and pydicom's CT, MR and ultrasound files")
    explain.add_argument("--out", required=True, help="output folder: <out>/<study UID>/<series UID>/")
    explain.add_argument("--model", action="append",
                         help="model description file or shipped name (repeatable; first match wins; default: "
                              "demo-ct, demo-mr, demo-colour, demo-any)")
    explain.add_argument("--max-steps", type=int, help="cap on Med-CAM optimisation steps per decision")
    explain.add_argument("--seed", type=int)
    explain.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    explain.add_argument("--uid-root", help="prefix of new UIDs, ending with '.' (default: pydicom's root)")
    explain.add_argument("--content-qualification", default="RESEARCH", choices=("RESEARCH", "PRODUCT", "SERVICE"))
    explain.add_argument("--overlays", default="findings", choices=("findings", "all"),
                         help="whose evidence gets a SEG overlay and a Secondary Capture: the classes the model "
                              "description lists as findings, or every decision; the SR has every decision "
                              "(default: %(default)s)")
    explain.add_argument("--parametric-map", action="store_true",
                         help="also write the soft mask of the drawn evidence as a Parametric Map (heat map)")
    explain.set_defaults(handler=_explain)

    def service_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", help="TOML configuration file ([medcam] table or top-level keys)")
        for flag, kind, text in SERVICE_FLAGS:
            sub.add_argument(flag, type=kind, help=text)
        sub.add_argument("--model", action="append", help="model description file or shipped name (repeatable)")
        return sub

    service_parser("serve", "run the DICOM node: receive, explain, send back").set_defaults(handler=_serve)
    service_parser("worker", "run explainer workers only (Redis: any machine, --spool is local scratch; "
                   "sqlite: this machine, the node's spool)").set_defaults(handler=_worker)
    status = service_parser("status", "jobs by state, queue length, last errors; exits 1 while a job record "
                            "is unreadable or quarantined")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    resend = service_parser("resend", "send a job's results to the destination again")
    resend.add_argument("job", help="job id (see medcam-dicom status / the spool's jobs/ folder)")
    resend.set_defaults(handler=_resend)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medcam-dicom`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "images", 1) < 1:
        print("medcam-dicom: error: --images must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:
        print(f"medcam-dicom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medcam-dicom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
