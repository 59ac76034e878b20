"""A batch's job file (JSONL or CSV), read and checked as a whole before anything is
queued: ``read_jobs``. A job is one workflow run with its own overrides; its ``key`` (a
digest of what it asks, plus its occurrence among identical jobs) names it in the results
manifest and its output folder, so editing or reordering other lines does not redo it."""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .client import EXIT_USAGE, RunnerError
from .workflow import apply_overrides, check_size_flags, file_args, load_workflow

# job field -> how it is read (the runner's flag of the same name, dashes as underscores)
SCALARS = {"workflow": str, "video": str, "image": str, "motion": str, "seed": int, "steps": int, "width": int,
           "height": int, "frames": int, "output_prefix": str}
LISTS = ("prompt", "negative", "set")
FIELDS = (*SCALARS, *LISTS)


@dataclass(frozen=True)
class Job:
    line: int            # 1-based line of the job file (CSV: counting the header)
    key: str             # stable name: manifest entries and the output folder
    fields: dict         # the job's fields as given (normalised types)
    prompt: dict         # the workflow as loaded (no overrides applied)

    def options(self, defaults: argparse.Namespace) -> argparse.Namespace:
        """The runner's options for this job: the command line's, with the job's on top."""
        opts = copy.copy(defaults)
        for name in FIELDS:
            setattr(opts, name, self.fields.get(name))
        return opts


def _as_list(name: str, value) -> list[str]:
    if name == "set" and isinstance(value, dict):   # {"NODE.INPUT": value}
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
    if name == "set" and isinstance(value, str):    # CSV: "A.x=1; B.y=2"
        return [s.strip() for s in value.split(";") if s.strip()]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"{name}: expected a string or a list of strings, got {value!r}")


def normalise(raw: dict) -> dict:
    """The job's fields with their types; ValueError names the field that is wrong."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         f"(known: {', '.join(FIELDS)})")
    out = {}
    for name, value in raw.items():
        if value is None or value == "":
            continue
        if name in LISTS:
            out[name] = _as_list(name, value)
            continue
        try:
            out[name] = SCALARS[name](value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            out[name] = None
        if out[name] is None or (SCALARS[name] is int and isinstance(value, float) and value != int(value)):
            raise ValueError(f"{name}: expected {'an integer' if SCALARS[name] is int else 'a string'}, "
                             f"got {value!r}")
    if "workflow" not in out:
        raise ValueError("no workflow (a shipped example's name or an .api.json file)")
    return out


def raw_rows(path: Path) -> list[tuple[int, object]]:
    """(line number, the row as parsed or the error text) for each job line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(reader.line_num, {k.strip(): v for k, v in row.items() if k}) for row in reader]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            row = f"not JSON ({e.msg} at column {e.colno})"
        rows.append((n, row if isinstance(row, (dict, str)) else "not a JSON object"))
    return rows


def check_job(fields: dict, defaults: argparse.Namespace, base: Path) -> dict:
    """The workflow of a job, after checking its overrides and local files as a run would."""
    for flag in ("video", "image", "motion"):
        # relative local paths are relative to the job file
        if flag in fields and not Path(fields[flag]).expanduser().is_absolute() and (base / fields[flag]).is_file():
            fields[flag] = str(base / fields[flag])
    wf = fields["workflow"]
    if not Path(wf).is_file() and (base / wf).is_file():
        fields["workflow"] = wf = str(base / wf)
    prompt = load_workflow(wf)
    opts = copy.copy(defaults)
    for name in FIELDS:
        setattr(opts, name, fields.get(name))
    check_size_flags(opts)
    apply_overrides(copy.deepcopy(prompt), opts, {})
    file_args(opts)
    return prompt


def job_key(fields: dict, seen: dict) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:10]
    seen[digest] = seen.get(digest, 0) + 1
    return f"j{digest}" + (f"-{seen[digest]}" if seen[digest] > 1 else "")


def read_jobs(path, defaults: argparse.Namespace) -> list[Job]:
    """Every job of the file, or one RunnerError listing each bad line (nothing queued)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RunnerError(EXIT_USAGE, f"--batch {path}: no such file")
    jobs, errors, seen = [], [], {}
    for line, row in raw_rows(path):
        try:
            if isinstance(row, str):
                raise ValueError(row)
            fields = normalise(row)
            key = job_key(fields, seen)
            jobs.append(Job(line, key, fields, check_job(fields, defaults, path.parent)))
        except (ValueError, RunnerError) as e:
            errors.append(f"  line {line}: {e}")
    if errors:
        raise RunnerError(EXIT_USAGE, f"job file {path}: {len(errors)} bad line{'s' if len(errors) > 1 else ''}, "
                                      "nothing was queued:\n" + "\n".join(errors))
    if not jobs:
        raise RunnerError(EXIT_USAGE, f"job file {path}: no jobs in it")
    return jobs
