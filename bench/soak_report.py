"""The soak's report: jobs done / failed / lost from the batch and its manifest, the RSS
slope per server, the interrupts, the killed server's recovery, what FastVMT left on the
models, and the batch outputs against the same jobs run alone."""
from __future__ import annotations

import platform
import re
import subprocess

import numpy as np

from fastvmt_runner.manifest import read_events


def read_frames(path) -> np.ndarray:
    import av
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def compare_outputs(batch_files: list, alone_files: list) -> dict:
    """A job's batch and alone outputs: the sampled latents (Save Latent) must be equal; the
    videos' decoded frames are compared for the record (their mp4 encoding is not
    bit-reproducible: equal frames can encode differently)."""
    from safetensors.torch import load_file
    lat_a = sorted(str(p) for p in batch_files if str(p).endswith(".latent"))
    lat_b = sorted(str(p) for p in alone_files if str(p).endswith(".latent"))
    if len(lat_a) != 1 or len(lat_b) != 1:
        return {"equal": False, "note": f"{len(lat_a)} batch latents, {len(lat_b)} alone"}
    a, b = load_file(lat_a[0])["latent_tensor"], load_file(lat_b[0])["latent_tensor"]
    equal = a.shape == b.shape and bool((a == b).all())
    video = compare_videos(batch_files, [p for p in alone_files if str(p).endswith(".mp4")])
    return {"equal": equal, "latent_max_abs_diff": float((a - b).abs().max()) if a.shape == b.shape else None,
            "video_frames_equal": video.get("equal"), "video_max_abs_diff": video.get("max_abs_diff")}


def compare_videos(batch_files: list, alone_files: list) -> dict:
    """Equal frames (and the largest difference) between a job's batch and alone videos."""
    batch = sorted(p for p in batch_files if str(p).endswith(".mp4"))
    if len(batch) != len(alone_files) or not batch:
        return {"equal": False, "note": f"{len(batch)} batch videos, {len(alone_files)} alone"}
    diffs = []
    for a, b in zip(batch, alone_files):
        fa, fb = read_frames(a), read_frames(b)
        if fa.shape != fb.shape:
            return {"equal": False, "note": f"shapes {fa.shape} vs {fb.shape}"}
        diffs.append(int(np.abs(fa.astype(int) - fb.astype(int)).max()))
    return {"equal": max(diffs) == 0, "max_abs_diff": max(diffs)}


def rss_slope(records: list, server: str, after_t: float | None = None, warmup: int = 5, kind=None) -> dict:
    """MB per run of the server's RSS after each of its runs (least squares, warm-up dropped);
    ``kind``: after that kind's runs only (which models are loaded moves RSS by GBs)."""
    rows = [r for r in records if r["server"] == server and r["rss_mb"] is not None
            and (after_t is None or r["t"] > after_t) and kind in (None, r["kind"])]
    rows = rows[warmup:]
    if len(rows) < 3:
        return {"runs": len(rows), "mb_per_run": None}
    y = np.array([r["rss_mb"] for r in rows])
    slope = float(np.polyfit(np.arange(len(y)), y, 1)[0])
    return {"runs": len(rows), "mb_per_run": round(slope, 2), "first_mb": round(float(y[0]), 1),
            "last_mb": round(float(y[-1]), 1)}


def manifest_counts(path, keys: list) -> dict:
    done = {}
    for e in read_events(path):
        if e.get("event") == "done":
            done[e["job"]] = done.get(e["job"], 0) + 1
    return {"done_once": sum(1 for k in keys if done.get(k) == 1),
            "done_twice": sum(1 for k in keys if done.get(k, 0) > 1),
            "never_done": sum(1 for k in keys if k not in done)}


def interrupt_rows(chaos) -> list:
    rows = []
    for key, it in chaos.interrupts.items():
        rows.append({"job": key, "tick": it["tick"], "of": it["of"], "ticks_after": it["ticks_after"],
                     "seconds_to_stop": round(it["t_end"] - it["t"], 2) if "t_end" in it else None,
                     "honoured": "interrupted" in it.get("error", "") and it["ticks_after"] <= 1})
    return rows


def kill_summary(kill: dict) -> dict:
    if not kill:
        return {}
    t = kill["t_kill"]
    out = {"job": kill["job"], "line": kill["line"]}
    for name in ("t_lost", "t_done_elsewhere", "t_ready", "t_b_first"):
        if name in kill:
            out[name.replace("t_", "seconds_to_")] = round(kill[name] - t, 1)
    return out


def _version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()[:40]
    except OSError:
        return "?"


def build(args, jobs, result, chaos, alone, logs: dict, batch_s: float, manifest_path) -> dict:
    keys = [j.key for j in jobs]
    counts = manifest_counts(manifest_path, keys)
    lost = len(set(keys) - set(result.done) - set(result.skipped) - set(result.failed))
    leftovers = [r["leftovers"] for r in chaos.records if r["leftovers"] is not None]
    interrupts = interrupt_rows(chaos)
    reservations = {n: {"planned": len(re.findall(r"FastVMT: gradient pass about", log)),
                        "offloaded": len(re.findall(r"FastVMT: gradient pass about.*ComfyUI offloaded", log))}
                    for n, log in logs.items()}
    summary = {
        "jobs": len(jobs), "done": len(result.done), "failed": len(result.failed), "lost": lost,
        "manifest": counts, "attempts": len(chaos.records), "batch_seconds": round(batch_s, 1),
        "rss_slope": {f"{name}{'_' + kind if kind else ''}": rss_slope(chaos.records, name, kind=kind,
                                                                       after_t=chaos.kill.get("t_ready") if name == "b" else None)
                      for name in ("a", "b") for kind in (None, "t2v", "i2v")},
        "leftovers_max": max(leftovers) if leftovers else None, "leftover_probes": len(leftovers),
        "guided_clones_alive_max": max((r["guided_clones_alive"] or 0) for r in chaos.records),
        "interrupts": len(interrupts), "interrupts_honoured": sum(r["honoured"] for r in interrupts),
        "kill": kill_summary(chaos.kill),
        "alone_equal": f"{sum(1 for r in alone if r.get('equal'))}/{len(alone)}",
        "alone_video_frames_equal": f"{sum(1 for r in alone if r.get('video_frames_equal'))}/{len(alone)}",
        "reservation_log_lines": reservations,
    }
    summary["ok"] = bool(lost == 0 and counts["done_twice"] == 0 and not result.failed
                         and summary["leftovers_max"] == 0 and summary["interrupts_honoured"] == len(interrupts)
                         and all(r.get("equal") for r in alone))
    return {"bench": "soak", "runs": args.runs, "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "device": "CPU", "python": platform.python_version(),
            "git": _version(["git", "rev-parse", "--short", "HEAD"]), "summary": summary,
            "interrupts": interrupts, "alone": alone, "records": chaos.records,
            "server_events": result.events}


def table(report: dict) -> str:
    s = report["summary"]
    k = s["kill"]
    rows = [("jobs done / failed / lost", f"{s['done']} / {s['failed']} / {s['lost']} of {s['jobs']}"),
            ("manifest: done once / twice / never", "{done_once} / {done_twice} / {never_done}".format(**s["manifest"])),
            ("attempts (retries and requeues included)", str(s["attempts"])),
            ("batch time", f"{s['batch_seconds']} s"),
            *[(f"RSS slope, server {n}{' (after restart)' if n == 'b' else ''}",
               ", ".join(f"{kind or 'all'} {s['rss_slope'][n + ('_' + kind if kind else '')].get('mb_per_run')} MB/run "
                         f"({s['rss_slope'][n + ('_' + kind if kind else '')]['runs']} runs)"
                         for kind in (None, "t2v", "i2v"))) for n in ("a", "b")],
            ("leftover FastVMT patches (max over probes)", f"{s['leftovers_max']} ({s['leftover_probes']} probes)"),
            ("interrupts honoured within one inner step", f"{s['interrupts_honoured']}/{s['interrupts']}"),
            ("killed server: job requeued / done elsewhere", f"{k.get('seconds_to_lost')} s / {k.get('seconds_to_done_elsewhere')} s"),
            ("killed server: answering again / first job done", f"{k.get('seconds_to_ready')} s / {k.get('seconds_to_b_first')} s"),
            ("batch output = same job alone (sampled latent)", s["alone_equal"]),
            ("  their mp4s decode to equal frames", s["alone_video_frames_equal"]),
            ("verdict", "ok" if s["ok"] else "NOT OK")]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(w)}  {b}" for a, b in rows)
