"""Find or create a study the same way for every command: --study plus --run-dir or --storage."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from edgeshrink.core.errors import EdgeshrinkError
from edgeshrink.core.metrics import DEFAULT_OBJECTIVES, directions, metric_keys
from edgeshrink.search.objective_values import study_objectives
from edgeshrink.search.options import check_study
from edgeshrink.search.stale import rdb_storage

JOURNAL_FILE = "study.journal"


def default_run_dir(study_name: str) -> Path:
    """``runs/<study>``: the one place that derives a study's default run directory."""
    check_study(study_name, None)
    return Path("runs") / study_name


def resolve_run_dir(study_name: str, run_dir: Path | str | None) -> Path:
    """``--run-dir`` when given, else the study's default run directory."""
    return Path(run_dir) if run_dir is not None else default_run_dir(study_name)


def mask_url(url: str) -> str:
    """Hide a password in a storage URL before it is printed."""
    return re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", url)


def _scrub(text: str, url: str) -> str:
    """A driver's message with every URL in it masked, and the raw password too."""
    text = mask_url(text)
    secret = re.match(r"[^:]+://[^:/@]*:([^@/]+)@", url)
    return text.replace(secret.group(1), "***") if secret else text


def open_storage(run_dir: Path, storage_url: str | None, *, create: bool) -> BaseStorage | str:
    """The run directory's journal file (safe for several processes) unless a URL is given."""
    if storage_url:
        try:
            return rdb_storage(storage_url)
        except Exception as exc:  # noqa: BLE001 - any driver error becomes one clear line
            detail = _scrub(str(exc).splitlines()[0] if str(exc) else "", storage_url)
            fix = ("install its driver, e.g. pip install 'edgeshrink[postgres]'"
                   if isinstance(exc, ImportError)
                   else "check the URL and that the database server is up and reachable")
            raise EdgeshrinkError(
                f"cannot open storage {mask_url(storage_url)}: {type(exc).__name__}: {detail}; "
                f"{fix}"
            ) from None
    journal = run_dir / JOURNAL_FILE
    if not create and not journal.is_file():
        raise EdgeshrinkError(
            f"no study storage at {journal}; pass the --run-dir of an earlier search or --storage"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(journal)))
    except OSError as exc:
        raise EdgeshrinkError(f"cannot write run directory {run_dir}: {exc.strerror}; make it "
                              "writable or pass another --run-dir") from None


def load_existing_study(name: str, run_dir: Path, storage_url: str | None) -> optuna.Study:
    storage = open_storage(run_dir, storage_url, create=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        known = ", ".join(names) or "none"
        raise EdgeshrinkError(f"no study named {name!r} in this storage (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def create_or_resume_study(
    name: str, run_dir: Path, storage_url: str | None, sampler: optuna.samplers.BaseSampler,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
) -> optuna.Study:
    """Create the study with one direction per objective, or resume it if the objectives match.

    A study's directions are fixed at creation, so resuming with other ``objectives`` (names as
    returned by ``parse_objectives``) is refused.
    """
    storage = open_storage(run_dir, storage_url, create=True)
    try:
        try:
            # Load first: a refused resume then leaves the storage untouched (a journal's
            # failed create would append to it).
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                directions=directions(objectives),
                sampler=sampler,
                load_if_exists=True,  # another worker may create it at the same moment
            )
        found = [d.name.lower() for d in study.directions]
        if study.metric_names is None and found == directions(objectives):
            # A new study (or an unnamed one with these directions): name its values, which
            # lets our reports and Optuna's own tools (optuna-dashboard) label them.
            study.set_metric_names(metric_keys(objectives))
    except OSError as exc:  # an existing journal in a directory that cannot be written
        raise EdgeshrinkError(f"cannot write run directory {run_dir}: {exc.strerror}; make it "
                              "writable or pass another --run-dir") from None
    stored = study_objectives(study)
    if found != directions(stored):
        raise EdgeshrinkError(f"study {name!r} exists with other objectives ({', '.join(found)}); "
                              "choose another --study name")
    if stored != tuple(objectives):
        raise EdgeshrinkError(
            f"study {name!r} was created with --objectives {','.join(stored)}, not "
            f"{','.join(objectives)}; its directions are fixed, so resume it with --objectives "
            f"{','.join(stored)} or choose another --study name"
        )
    return study
