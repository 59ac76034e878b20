"""Smaller cards, simulated on a big one: one subprocess of ``python -m bench.gpu`` per card.

A card of N GiB is simulated faithfully in a fresh process: before ComfyUI's model
management is imported, ``torch.cuda.mem_get_info`` is replaced so it reports N GiB
minus what torch holds (ComfyUI plans its loading and the pack its guidance memory
for that card), and ``torch.cuda.set_per_process_memory_fraction`` makes any
allocation past N GiB fail. A process can simulate one card only, hence one
subprocess each. On a CPU (``--toy``) the patch is installed but nothing enforces it.

Booting ComfyUI costs CPU-bound seconds, so card subprocesses are started ahead (one per
spare core): they boot while the main process or the previous card measures, then wait
on stdin for "go" (anything else, or the parent's exit, ends them unmeasured). The 14B
weights take minutes to make on the CPU; a background process (``--write-model``) writes
them meanwhile, and a 14B card starts measuring once they are written.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench.gpu_common import Recorder, boot_host, layouts, make_graph, run_timed, write_model

# name, layout key, simulated card (GiB), cost estimate once booted: GPU at full size (s)
CARDS = [
    ("1.3B on 8 GiB", "1.3b", 8, 45),
    ("14B fp8 on 24 GiB", "14b", 24, 90),
    ("14B fp8 on 16 GiB", "14b", 16, 130),
]
TOY_CARD_S = 10  # a tiny step, or the rest of a boot still under way on a loaded CPU
HOW = ("one subprocess per card: torch.cuda.mem_get_info reports the card minus what torch holds (patched before "
       "ComfyUI is imported) and set_per_process_memory_fraction makes an overrun fail; one guided step")


def simulate_card(cap_gib: float) -> dict:
    """Make this process see a card of ``cap_gib``; call before ComfyUI is imported."""
    import torch
    cap = int(cap_gib * 2**30)
    info = {"cap_gib": cap_gib, "comfyui_imported_before_patch": "comfy.model_management" in sys.modules}
    if torch.cuda.is_available():
        _, total = torch.cuda.mem_get_info()
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
        info.update(real_total_gib=total / 2**30, enforced=True)
    else:
        info["enforced"] = False

    def mem_get_info(device=None):
        held = torch.cuda.memory_reserved(device) if torch.cuda.is_available() else 0
        return max(0, cap - held), cap

    torch.cuda.mem_get_info = mem_get_info
    info["mem_get_info_total_gib"] = mem_get_info()[1] / 2**30
    return info


def card_main(args) -> int:
    """Subprocess entry: simulate the card, boot the host, wait for "go", one guided step."""
    info = simulate_card(args.card_gib)  # first: before anything imports ComfyUI
    import torch
    cuda = torch.cuda.is_available()
    rec = Recorder(args.card_json, None, {"card": args.card_name, **info})
    layout = layouts(args.toy)[args.card_layout]
    rec.put("layout", layout.label)
    t0 = time.perf_counter()
    host = boot_host(Path(args.work) / "base", cuda)
    import comfy.model_management as mm
    rec.put("boot_s", time.perf_counter() - t0)
    rec.put("comfyui_total_vram_mib", mm.total_vram)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 0
    try:
        t0 = time.perf_counter()
        name = write_model(host, layout, args.toy)  # written already, by the main process or the writer
        rec.put("model_ready_s", time.perf_counter() - t0)
        run = run_timed(host, make_graph(name, layout, steps=1, seed=7, overrides={"guided_fraction": 1.0}), cuda)
        steps = run.report.get("steps", [])
        rec.put("fits", True)
        rec.put("guided_step_s", steps[0]["seconds"] if steps else None)
        rec.put("wall_s", run.wall_s)
        rec.put("peak_gib", run.peak_gib)
        rec.put("alloc_retries", run.alloc_retries)
        rec.put("weight_copies", run.report.get("weight_copies"))
        rec.put("gradient_passes", steps[0]["gradient_evaluations"] if steps else None)
        rec.put("memory_plan", run.report.get("memory"))
        rec.put("loaded_gib", [round(m.model.loaded_size() / 2**30, 3) for m in mm.current_loaded_models])
        return 0
    except Exception as e:  # noqa: BLE001  (an overrun on the simulated card lands here)
        rec.put("fits", False)
        rec.put("error", f"{type(e).__name__}: {e}"[:3000])
        traceback.print_exc()
        return 1


def writer_main(args) -> int:
    """Subprocess entry: write the layout's model file into the run's shared models folder."""
    import comfy_host
    import torch
    layout = layouts(args.toy)[args.write_model]
    path = Path(args.work) / "base" / "models" / "diffusion_models" / layout.model_name(args.toy)
    if not path.exists():
        t0 = time.perf_counter()
        comfy_host.make_tiny_wan(path, dim=layout.dim, num_layers=layout.layers, ffn_dim=layout.ffn,
                                 dtype=getattr(torch, layout.dtype))
        print(f"wrote {path.name} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f}s",
              flush=True)
    return 0


def _spawn(args, env: dict, tag: str, extra: list, stdin=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.gpu", "--work", str(args.work), *extra] + (["--toy"] if args.toy else [])
    with open(Path(args.work) / f"{tag}.log", "w") as log:  # a file, not a pipe: a full pipe would stall it
        return subprocess.Popen(cmd, env=env, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, text=True)


def _log_tail(args, tag: str, n: int = 1500) -> str:
    path = Path(args.work) / f"{tag}.log"
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def ahead() -> int:
    """Card subprocesses booting at once: one per spare core, at most all of them."""
    import os
    return max(1, min(len(CARDS), (os.cpu_count() or 2) - 1))


class Cards:
    """The card subprocesses (each boots, then waits for "go") and the 14B weight writer."""

    def __init__(self, args, env: dict, rec: Recorder):
        self.args, self.env, self.rec = args, env, rec
        self.procs: dict = {}
        self.writer = _spawn(args, env, "writer", ["--write-model", "14b"])
        self.writer_logged = False
        for i in range(ahead()):
            self.ensure(i)
        rec.log(f"started the 14B weight writer and {ahead()} card subprocess(es) (they boot ComfyUI, then wait)")

    def ensure(self, i: int):
        if i < len(CARDS) and i not in self.procs:
            name, key, gib, _ = CARDS[i]
            tag = f"card_{key}_{gib:g}"
            self.procs[i] = _spawn(self.args, self.env, tag,
                                   ["--card-name", name, "--card-layout", key, "--card-gib", str(gib),
                                    "--card-json", str(Path(self.args.work) / f"{tag}.json")], stdin=subprocess.PIPE)
        return self.procs.get(i)

    def stop(self) -> None:
        for proc in [self.writer, *self.procs.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def wait_writer(self, budget) -> bool:
        if self.writer.poll() is None:
            self.rec.log("waiting for the background 14B weights ...")
            try:
                self.writer.wait(timeout=max(budget.left(), 1))
            except subprocess.TimeoutExpired:
                return False
        if not self.writer_logged:
            lines = _log_tail(self.args, "writer", 300).strip().splitlines()
            self.rec.log(f"14B weight writer: exit {self.writer.returncode}; {(lines or [''])[-1]}")
            self.writer_logged = True
        return self.writer.returncode == 0


def run_cards(args, rec: Recorder, budget, cards: Cards | None, boot_s: float) -> dict:
    """Each card in turn, while the budget allows; the next ones boot meanwhile. ``cards``
    is None when the budget was too small to start them."""
    rows = []
    result = {"how": HOW, "rows": rows}
    for i, (name, key, gib, fixed_s) in enumerate(CARDS):
        need = (TOY_CARD_S if args.toy else fixed_s) + (0 if cards and i in cards.procs else boot_s)
        if cards is None or not budget.allows(f"card {name}", need, rec):
            rows.append({"card": name, "skipped": budget.skip_reason(need)})
            if cards is None:
                rec.log(f"skip card {name}: {rows[-1]['skipped']}")
        elif key == "14b" and not cards.wait_writer(budget):
            rows.append({"card": name, "skipped": "the 14B weights were not written within the budget"})
        else:
            proc = cards.ensure(i)
            cards.ensure(i + ahead())  # boots while this card measures
            rows.append(_run_card(args, rec, budget, name, key, gib, proc))
        rec.put("cards", result)
    return result


def _run_card(args, rec: Recorder, budget, name: str, key: str, gib: float, proc) -> dict:
    tag = f"card_{key}_{gib:g}"
    rec.log(f"card {name}: go")
    t0 = time.perf_counter()
    try:
        proc.stdin.write("go\n")
        proc.stdin.close()
        rc = proc.wait(timeout=max(budget.left(), 5) + 30)
    except (subprocess.TimeoutExpired, BrokenPipeError):
        proc.kill()
        rc = proc.wait()
    row = {"card": name}
    out = Path(args.work) / f"{tag}.json"
    if out.exists():
        row.update(json.loads(out.read_text()))
    if "fits" not in row:
        row.update(fits=False, error=f"the card subprocess measured nothing (exit {rc}): {_log_tail(args, tag)}")
    row.update(measure_s=time.perf_counter() - t0, exit=rc)
    if row["fits"]:
        rec.log(f"card {name}: fits; guided step {row['guided_step_s']:.2f}s, peak {row['peak_gib']:.2f} GiB, "
                f"ComfyUI saw {row['comfyui_total_vram_mib']:.0f} MiB")
    else:
        rec.log(f"card {name}: does not fit or failed: {str(row.get('error'))[:600]}")
    return row
