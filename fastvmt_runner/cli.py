"""The command line: its options, the checks that need no server, ``--dry-run``,
``--selftest`` and the exit code (``run``; ``main`` exits with it)."""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

from . import selftest
from .client import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MISSING, EXIT_OK, EXIT_USAGE, Client, RunnerError
from .batch import run_batch
from .job import run_prompt
from .jobs import read_jobs
from .workflow import apply_overrides, check_size_flags, file_args, load_workflow

PROG = "fastvmt_runner.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Run a (FastVMT) API-format workflow on a running ComfyUI and download the videos it makes.",
        epilog="Exit codes: 0 ok, 2 usage/workflow, 3 server unreachable, 4 missing model/node/input, "
               "5 prompt rejected, 6 execution failed, 7 timeout, 130 interrupted (Ctrl-C).")
    ap.add_argument("workflow", nargs="?", help="API-format workflow file (*.api.json) or the name of a shipped "
                                                "example, e.g. fastvmt_wan21_t2v_motion_transfer")
    ap.add_argument("--selftest", action="store_true",
                    help=f"run the self-test ({selftest.WORKFLOW} unless a workflow is named; the shipped "
                         "clip unless --video is given) and print both Motion Fidelity scores")
    ap.add_argument("--server", action="append",
                    help="ComfyUI address host:port or URL (default: $COMFYUI_SERVER or 127.0.0.1:8188); "
                         "repeat with --batch to spread the jobs over several servers")
    batch = ap.add_argument_group(
        "batch mode", "--batch JOBS runs a job file: JSONL (one object a line) or CSV (a header row), with the "
                      "fields workflow (required), prompt, negative, seed, steps, width, height, frames, video, "
                      "image, motion, output_prefix and set (NODE.INPUT=VALUE; JSONL: a list or an object, CSV: "
                      "separated by ';'). The command line's other options are every job's defaults. See "
                      "docs/batch.md.")
    batch.add_argument("--batch", metavar="JOBS", help="job file (.jsonl or .csv); the whole file is checked "
                                                       "before anything is queued")
    batch.add_argument("--manifest", help="results manifest (default: OUT_DIR/batch_manifest.jsonl); rerunning "
                                          "with the same manifest resumes: done jobs are skipped")
    batch.add_argument("--retries", type=int, default=2,
                       help="extra attempts for a job that fails (default: %(default)s)")
    batch.add_argument("--server-wait", type=float, default=300,
                       help="stop (resumable) when no server has answered for this many seconds "
                            "(default: %(default)s)")
    files = ap.add_argument_group(
        "input files", "A value that exists as a local file is uploaded. One written as a path (with a folder, "
                       "starting with . or ~, or absolute) must exist, except a relative one that names a file in "
                       "ComfyUI's input folder (e.g. fastvmt/motion.safetensors); a bare name is a file in that "
                       "folder.")
    files.add_argument("--video", help="reference video: a local file (uploaded to ComfyUI's input folder) or the "
                                       "name of a file already in that folder")
    files.add_argument("--image", help="start image of an image-to-video workflow: a local file (uploaded to "
                                       "ComfyUI's input folder) or the name of a file already in that folder")
    files.add_argument("--motion", help="saved motion (.safetensors) for Load Motion: a local file (uploaded to "
                                        "input/fastvmt/) or a name relative to the input folder")
    ap.add_argument("--prompt", action="append", help="positive prompt; repeat to give one per sampler")
    ap.add_argument("--negative", action="append", help="negative prompt; repeat to give one per sampler")
    ap.add_argument("--seed", type=int, help="seed of every sampler (its seed or noise_seed)")
    ap.add_argument("--steps", type=int, help="step count of every sampler")
    ap.add_argument("--width", type=int, help="video width (multiple of 16), reference and generation")
    ap.add_argument("--height", type=int, help="video height (multiple of 16), reference and generation")
    ap.add_argument("--frames", type=int, help="video length in frames (4k+1: 33, 49, 81, ...)")
    ap.add_argument("--output-prefix", help="Save Video filename_prefix (a subfolder of ComfyUI's output folder "
                                            "is allowed, e.g. video/fox)")
    ap.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                    help="any other input: NODE is a node id or its exact title; VALUE is JSON or a string")
    ap.add_argument("--out-dir", default="fastvmt_outputs", help="where to download results (default: %(default)s)")
    ap.add_argument("--no-download", action="store_true", help="do not download the results")
    ap.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    ap.add_argument("--dry-run", action="store_true",
                    help="check the options and that the local files exist, print the final API prompt (after "
                         "overrides, no upload) and exit; needs no server")
    ap.add_argument("--quiet", action="store_true", help="no progress display")
    return ap


def selftest_setup(args, prompt: dict) -> None:
    """--selftest: the workflow scores a plain and a FastVMT run (checked before anything
    runs), and the reference is the shipped clip unless --video names another."""
    if not args.selftest:
        return
    try:
        selftest.score_nodes(prompt)
    except ValueError as e:
        raise RunnerError(EXIT_USAGE, str(e)) from None
    if args.video is None:
        if not selftest.CLIP.is_file():
            raise RunnerError(EXIT_MISSING, f"the self-test clip {selftest.CLIP} is missing: reinstall the "
                                            "pack or pass --video")
        args.video = str(selftest.CLIP)


def dry_run(prompt: dict, args, stdout, stderr) -> int:
    """The prompt after the overrides, local files checked but not uploaded."""
    prompt = copy.deepcopy(prompt)
    apply_overrides(prompt, args, {})
    for flag, value in file_args(args).folder_names.items():
        print(f"note: --{flag} {value}: no such local file; a run takes it as a name in ComfyUI's input folder "
              "if the server lists it (not checked: --dry-run asks no server)", file=stderr)
    print(json.dumps(prompt, indent=2, ensure_ascii=False), file=stdout)
    return EXIT_OK


def servers(args) -> list[str]:
    found = args.server or [os.environ.get("COMFYUI_SERVER", "127.0.0.1:8188")]
    if len(found) > 1 and not args.batch:
        raise RunnerError(EXIT_USAGE, "several --server values need --batch (a single run uses one server)")
    return found


def _run_batch(args, stderr) -> int:
    if args.workflow is not None or args.selftest or args.dry_run:
        raise RunnerError(EXIT_USAGE, "--batch takes the workflow from each job: drop the workflow argument, "
                                      "--selftest and --dry-run")
    if args.retries < 0:
        raise RunnerError(EXIT_USAGE, f"--retries {args.retries}: must be 0 or more")
    jobs = read_jobs(args.batch, args)
    return run_batch(jobs, servers(args), args, out_dir=args.out_dir, manifest_path=args.manifest,
                     retries=args.retries, server_wait=args.server_wait, err=stderr).code


def _run(args, stdout, stderr) -> int:
    if args.batch:
        return _run_batch(args, stderr)
    if args.workflow is None and not args.selftest:
        raise RunnerError(EXIT_USAGE, "name a workflow (an .api.json file or a shipped example), or use --selftest")
    prompt = load_workflow(args.workflow or selftest.WORKFLOW)
    check_size_flags(args)
    selftest_setup(args, prompt)
    if args.dry_run:
        return dry_run(prompt, args, stdout, stderr)
    result = run_prompt(Client(servers(args)[0]), prompt, args, stdout, stderr)
    if args.selftest:
        try:
            print(selftest.summary(result.prompt, result.entry, result.stats, result.seconds, result.paths),
                  file=stdout)
        except ValueError as e:
            raise RunnerError(EXIT_FAILED, str(e)) from None
    return EXIT_OK


def run(argv=None, stdout=None, stderr=None, prog: str = PROG) -> int:
    """The runner on ``argv`` (default: the command line); returns the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser(prog).parse_args(argv)
    try:
        return _run(args, stdout, stderr)
    except RunnerError as e:
        print(f"error: {e}", file=stderr)
        return e.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv=None, prog: str = PROG) -> None:
    sys.exit(run(argv, prog=prog))
