"""`cardioquant batch INPUTS -o OUTROOT --analyses calcium,bmd [--workers N] [--scheduler ADDRESS] [--timeout S]
[--retries N] [options of the analyses]`

INPUTS is a folder tree (every DICOM series and image file is a study) or a CSV manifest (id,path[,options]).
Each study's results are OUTROOT/<study id>/<analysis>/, exactly the files the single-study command writes;
OUTROOT/ledger.sqlite records every run; OUTROOT/cohort.csv and cohort.parquet hold one row per study and
analysis. A rerun skips what is done with the same input, settings and versions, and does the rest.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import functools
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from .. import __version__, pipelines
from ..errors import InputError
from . import studies as cohort_studies
from .engine import run_job
from .ledger import Ledger, now

EXIT_OK, EXIT_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    from ..cli import OneLineParser

    parser = OneLineParser(prog="cardioquant batch", description=__doc__.split("\n\n")[1],
                                     epilog="Any other option is passed to every analysis (e.g. --device cpu, --kvp "
                                            "120); per-study options go in the manifest's columns.")
    parser.add_argument("inputs", type=Path, help="folder tree of scans, or a CSV manifest with columns id,path")
    parser.add_argument("-o", "--output", required=True, type=Path, help="OUTROOT: one folder per study")
    parser.add_argument("--analyses", required=True, help=f"comma-separated: {', '.join(pipelines.TITLES)}")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes, one thread each [2]")
    parser.add_argument("--memory-limit", default="4GB", help="memory limit per local worker [4GB]")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler (e.g. tcp://host:8786) instead of "
                                            "a local cluster")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one study's analysis may take [1800]")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a study that crashed or timed out [1]")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    options, passed_on = build_parser().parse_known_args(argv)
    try:
        plan = prepare(options, passed_on)
    except InputError as exc:
        print(f"cardioquant: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    with open(options.output / ".batch.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"cardioquant: error: another batch is writing {options.output}; wait for it or choose another "
                  "output folder.", file=sys.stderr)
            return EXIT_INPUT
        return execute(plan, options)


# --- the plan: studies, jobs, what is already done ----------------------------------------------------------

def prepare(options, passed_on: list[str]) -> dict:
    """Everything checked before any work: analyses, options, output folder, studies and their jobs."""
    analyses = [a.strip() for a in options.analyses.split(",") if a.strip()]
    unknown = [a for a in analyses if a not in pipelines.TITLES]
    if unknown or not analyses:
        raise InputError(f"--analyses {options.analyses}: choose from {', '.join(pipelines.TITLES)}.")
    for name, value, low in (("--workers", options.workers, 1), ("--retries", options.retries, 0)):
        if value < low:
            raise InputError(f"{name} {value} is out of range: give {low} or more.")
    if not options.timeout > 0:
        raise InputError(f"--timeout {options.timeout:g} is out of range: give a number of seconds above 0.")
    for analysis in analyses:
        _check_options(analysis, passed_on, "the batch command line")
    left_out: list[str] = []
    unreadable: list[str] = []
    found = cohort_studies.discover(options.inputs, options.output, left_out, unreadable)
    options.output.mkdir(parents=True, exist_ok=True)
    probe = options.output / ".write-probe"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to {options.output} ({exc.strerror}); choose a writable output folder.") from exc
    jobs = []
    for study in found:
        fingerprint = study.fingerprint()  # once per study: it reads the whole file listing
        jobs += [_job(study, analysis, passed_on, options, fingerprint) for analysis in analyses]
    return {"studies": found, "analyses": analyses, "jobs": jobs, "versions": versions(), "left_out": left_out,
            "unreadable": unreadable}


def _check_options(analysis: str, arguments: list[str], where: str) -> None:
    from ..cli import build_parser as single_parser

    try:
        parsed = single_parser().parse_args([analysis, "input", "-o", "unused", *arguments])
    except SystemExit as exc:
        raise InputError(f"{where}: option(s) {' '.join(arguments)} are not valid for '{analysis}' "
                         f"(cardioquant {analysis} --help lists them).") from exc
    try:
        module = pipelines.get(analysis)
        module.check_options(module.SETTINGS.from_options(parsed))  # ranges, before any study runs
    except InputError as exc:
        raise InputError(f"{where}, {analysis}: {exc}") from exc


@functools.cache
def _option_names(analysis: str) -> frozenset[str]:
    """The option names (argparse dest) of one analysis's command line."""
    from ..cli import build_parser as single_parser

    return frozenset(vars(single_parser().parse_args([analysis, "input", "-o", "unused"])))


def _job(study, analysis: str, passed_on: list[str], options, fingerprint: str) -> dict:
    """The job of one study and analysis: manifest columns become that analysis's options where it has them."""
    per_study = []
    for key, value in study.options.items():
        name = key.strip().replace("-", "_")
        if name in _option_names(analysis):
            per_study += [f"--{name.replace('_', '-')}", str(value)]
        elif not any(name in _option_names(a) for a in pipelines.TITLES):
            raise InputError(f"manifest column '{key}' is not an option of any analysis; rename or remove it.")
    argv = [study.path, *(["--series", study.series] if study.series else []), *passed_on, *per_study]
    _check_options(analysis, argv[1:], f"study {study.id}")
    out = options.output
    return {"study": study.id, "analysis": analysis, "description": study.description, "argv": argv,
            "final": str(out / study.id / analysis),
            "staging": str(out / ".staging"), "logs": str(out / ".logs"), "timeout": options.timeout,
            "fingerprint": fingerprint,
            "settings": hashlib.sha256(json.dumps([analysis, passed_on, per_study]).encode()).hexdigest()}


def versions() -> str:
    """The software and the models a result depends on: cardioquant's version and the model manifest's hash."""
    manifests = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.json"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in manifests)).hexdigest()[:16]
    return f"cardioquant {__version__}; models {digest}"


def is_done(job: dict, ledger: Ledger, versions_now: str) -> bool:
    row = ledger.get(job["study"], job["analysis"])
    return bool(row and row["status"] == "done" and row["input_fingerprint"] == job["fingerprint"]
                and row["settings_hash"] == job["settings"] and row["versions"] == versions_now
                and (Path(job["final"]) / f"{job['analysis']}.json").exists())


# --- running it -------------------------------------------------------------------------------------------

def execute(plan: dict, options) -> int:
    out = options.output
    shutil.rmtree(out / ".staging", ignore_errors=True)  # what a killed run left half-written
    (out / ".staging").mkdir()
    (out / ".logs").mkdir(exist_ok=True)
    ledger = Ledger(out / "ledger.sqlite")
    started = time.perf_counter()
    todo = [job for job in plan["jobs"] if not is_done(job, ledger, plan["versions"])]
    skipped = len(plan["jobs"]) - len(todo)
    if not options.quiet:
        series = sum(1 for study in plan["studies"] if study.series)
        print(f"cardioquant batch: {len(plan['studies'])} studies ({series} DICOM series), "
              f"{len(plan['analyses'])} analyses: {len(todo)} runs to do, {skipped} already done", file=sys.stderr)
        if plan.get("left_out"):
            print(f"cardioquant batch: {len(plan['left_out'])} series or files left out (of one or two images beside a "
                  "volume in the same exam folder: localizers, dose reports; or not scans: segmentations, structure "
                  "sets), "
                  f"e.g. {plan['left_out'][0]}", file=sys.stderr)
        if plan.get("unreadable"):
            print(f"cardioquant batch: {len(plan['unreadable'])} DICOM files that could not be read as images left out "
                  f"(RT Dose objects of one frame, damaged files), e.g. {plan['unreadable'][0]}", file=sys.stderr)
    counts = {"done": 0, "failed": 0}
    interrupted = False
    if todo:
        client, cluster = _client(options)
        progress = _Progress(len(todo), options.quiet, client.dashboard_link if cluster is not None else None)
        try:
            _run_all(client, todo, ledger, plan["versions"], options.retries, counts, progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    write_cohort(out, plan, ledger)
    ledger.close()
    seconds = time.perf_counter() - started
    print(f"cardioquant batch: {counts['done']} done, {skipped} skipped (already done), {counts['failed']} failed"
          f"{', interrupted: rerun to resume' if interrupted else ''}; {seconds:.0f} s; table {out / 'cohort.csv'}",
          file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else EXIT_FAILED if counts["failed"] else EXIT_OK


def _client(options):
    import logging

    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)  # the summary and the progress line only
    if options.scheduler:
        return Client(options.scheduler), None
    cluster = LocalCluster(n_workers=options.workers, threads_per_worker=1, processes=True,
                           memory_limit=options.memory_limit, dashboard_address=":0", silence_logs=40)
    return Client(cluster), cluster


def _run_all(client, todo, ledger, versions_now, retries, counts, progress) -> None:
    from dask.distributed import as_completed

    attempts: dict[tuple, int] = {}
    pending = as_completed()
    by_future = {}

    def submit(job):
        key = (job["study"], job["analysis"])
        attempts[key] = attempts.get(key, 0) + 1
        ledger.record(*key, status="running", input_fingerprint=job["fingerprint"], settings_hash=job["settings"],
                      versions=versions_now, attempts=attempts[key], started=now(), error="")
        future = client.submit(run_job, job, pure=False, key=f"{job['study']}/{job['analysis']}/{attempts[key]}")
        by_future[future.key] = job
        pending.add(future)

    for job in todo:
        submit(job)
    for future in pending:
        job = by_future.pop(future.key)
        key = (job["study"], job["analysis"])
        try:
            outcome = future.result()
        except Exception as exc:  # the worker itself died more often than Dask's allowed failures
            outcome = {"status": "failed", "error": f"worker lost ({type(exc).__name__})", "retry": True,
                       "seconds": None}
        if outcome["status"] == "failed" and outcome.get("retry") and attempts[key] <= retries:
            ledger.record(*key, status="retrying", error=outcome["error"])
            submit(job)
            continue
        counts[outcome["status"]] += 1
        ledger.record(*key, status=outcome["status"], error=outcome["error"], seconds=outcome.get("seconds"),
                      finished=now(), output=job["final"] if outcome["status"] == "done" else None)
        progress.update(counts)


class _Progress:
    """One overall line on stderr: done, failed, rate, ETA (a bar on a terminal, a line per study otherwise)."""

    def __init__(self, total: int, quiet: bool, dashboard: str | None):
        self.total, self.quiet, self.started = total, quiet, time.perf_counter()
        self.terminal = sys.stderr.isatty()
        if dashboard and not quiet:
            print(f"cardioquant batch: {total} runs; Dask dashboard {dashboard}", file=sys.stderr)

    def update(self, counts: dict) -> None:
        if self.quiet:
            return
        finished = counts["done"] + counts["failed"]
        minutes = (time.perf_counter() - self.started) / 60.0
        rate = finished / minutes if minutes > 0 else 0.0
        eta = (self.total - finished) / rate if rate > 0 else float("nan")
        line = (f"{finished}/{self.total} ({counts['failed']} failed), {rate:.1f}/min, ETA {eta:.1f} min")
        print(("\r" + line) if self.terminal else line, end="" if self.terminal else "\n", file=sys.stderr,
              flush=True)
        if self.terminal and finished == self.total:
            print(file=sys.stderr)


# --- the cohort table -------------------------------------------------------------------------------------

def headline(analysis: str, result: dict) -> dict:
    """The figures a cohort table carries for each analysis, from its JSON."""
    summary = result.get("summary", result)
    if analysis == "calcium":
        row = {"agatston_total": summary["total"]["agatston"], "volume_mm3_total": summary["total"]["volume_mm3"],
               "risk_category": summary["risk"]["classic"], "cac_drs": summary["risk"]["cac_drs"],
               "calcium_mode": summary.get("mode")}
        for artery, values in summary["arteries"].items():
            # The automatic path's left main is scored with the LAD: blank here, not 0, and where it went said.
            row[f"agatston_{artery}"] = None if values.get("scored_with") else values["agatston"]
            if values.get("scored_with"):
                row[f"{artery}_scored_with"] = values["scored_with"]
        return row
    if analysis == "bmd":
        patient = summary["patient"]
        return {"bmd_mg_cm3": patient["bmd_mg_cm3"], "acr_category": patient["acr_category"],
                "bmd_levels": "+".join(patient["levels"]), "bmd_level_determined": patient.get("level_determined")}
    if analysis == "scar":
        return {"lge_percent": summary["lge_percent"], "scar_ml": summary["scar_ml"], "mvo_ml": summary["mvo_ml"],
                "myocardium_ml": summary["myocardium_ml"]}
    vessels = summary.get("vessels", {})
    worst = min(vessels.items(), key=lambda item: item[1]["distal_ffr"]) if vessels else (None, {})
    return {"lowest_distal_ffr": worst[1].get("distal_ffr"), "lowest_ffr_vessel": worst[0]}


def write_cohort(out: Path, plan: dict, ledger: Ledger) -> list[dict]:
    """OUTROOT/cohort.csv and cohort.parquet: one row per study and analysis of this cohort."""
    rows = []
    for job in plan["jobs"]:
        record = ledger.get(job["study"], job["analysis"]) or {}
        row = {"study": job["study"], "analysis": job["analysis"], "description": job["description"],
               "status": record.get("status", "not run"),
               "error": record.get("error") or "", "seconds": record.get("seconds"), "output": ""}
        result_path = Path(job["final"]) / f"{job['analysis']}.json"
        if row["status"] == "done" and result_path.exists():
            result = json.loads(result_path.read_text())
            row |= headline(job["analysis"], result)
            row["warnings"] = " | ".join(result.get("warnings", []))
            row["output"] = str(Path(job["final"]))
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "cohort.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: ("" if row.get(key) is None else row.get(key)) for key in columns} for row in rows)
    import pandas

    pandas.DataFrame(rows, columns=columns).to_parquet(out / "cohort.parquet", index=False)
    return rows
