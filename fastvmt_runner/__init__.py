"""Run a FastVMT API workflow on a running ComfyUI, headless.

    python fastvmt_runner.py fastvmt_wan21_t2v_motion_transfer --video clip.mp4 \\
        --prompt "a red fox running through snow" --steps 50 --seed 7
    python -m fastvmt_runner ...        (the same, from the pack's folder)

The workflow is an API-format file (``example_workflows/api/*.api.json``, or any file
saved with the frontend's "Export (API)"), or the bare name of a shipped example. The
runner

1. checks the file flags: a local file is uploaded later; a value written as a path that
   names no file is refused here, before any network;
2. checks the server (``/system_stats``), that every node type is installed, that every
   model file the loaders name is in ComfyUI's ``models/`` folders and that every input
   file not uploaded is in its input folder;
3. uploads the reference video (``--video``), start image (``--image``) and saved motion
   (``--motion``) through ``/upload/image`` when they are local files;
4. applies the overrides, queues the prompt (``POST /prompt``) and shows progress from the
   websocket (``/ws``);
5. waits for the result (``/history``) and downloads the videos it wrote (``/view``) into
   ``--out-dir``.

``--selftest`` runs the self-test (``fastvmt_selftest_wan21_t2v`` unless a workflow is
named): it uploads the reference clip shipped in ``example_workflows/input/`` (unless
``--video`` is given), samples one prompt and seed without and with FastVMT, and prints
both Motion Fidelity scores, their difference and the side-by-side video, with how to
read and report them (``selftest``).

Overrides find their nodes by structure, not by id: ``--prompt`` sets the ``text`` of the
text-encoder nodes that feed a sampler's ``positive`` input (repeat it to give one text
per sampler, in node-id order), ``--negative`` those feeding ``negative``; ``--width``,
``--height`` and ``--frames`` set every node with ``width`` / ``height`` / ``length``
widgets (reference extraction and empty latent together), ``--seed`` / ``--steps`` every
sampler, ``--output-prefix`` every Save Video node.

Exit codes: 0 done, 2 bad arguments or workflow, 3 server unreachable, 4 missing model,
node type or input file (local or on the server), 5 prompt rejected by ComfyUI (its
node_errors are printed), 6 execution failed or was interrupted, 7 timed out, 130 Ctrl-C.
HTTP goes through ``requests``, the progress display through ``tqdm``, the websocket
through ``aiohttp`` (tqdm and aiohttp come with ComfyUI; without aiohttp the runner polls
``/history``).

``--batch JOBS`` runs a job file (JSONL or CSV) over any number of ``--server``s: each job
goes to the free server with the shortest queue, a server that stops answering has its job
queued elsewhere, and a results manifest makes a rerun resume (docs/batch.md).

Modules, each using only those before it: ``client`` (exit codes, RunnerError, Client:
one server's HTTP API), ``workflow`` (loading, file flags, overrides), ``preflight``
(server checks), ``watch`` (queue, progress, history, outputs), ``selftest``, ``job``
(``run_prompt``: one prompt on one server), ``jobs`` (the batch's job file), ``manifest``
(its results), ``attempt`` (one job on one server), ``batch`` (``run_batch``), ``cli``
(options, ``run``, ``main``).
"""
from .cli import build_parser, main, run
from .client import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MISSING, EXIT_OK, EXIT_REJECTED, EXIT_SERVER,
                     EXIT_TIMEOUT, EXIT_USAGE, Client, RunnerError)
from .batch import BatchResult, Hooks, run_batch
from .job import RunResult, run_prompt
from .jobs import read_jobs
from .workflow import apply_overrides, file_args, load_workflow

__all__ = [
    "build_parser", "main", "run", "run_prompt", "RunResult", "Client", "RunnerError",
    "run_batch", "read_jobs", "BatchResult", "Hooks",
    "load_workflow", "apply_overrides", "file_args",
    "EXIT_OK", "EXIT_USAGE", "EXIT_SERVER", "EXIT_MISSING", "EXIT_REJECTED", "EXIT_FAILED", "EXIT_TIMEOUT",
    "EXIT_INTERRUPTED",
]
