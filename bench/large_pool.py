"""Peak memory of `activeft select` on pools larger than memory (issue #25): 10,000,000 × 384 on a 24 GiB machine.

Writes a features file of clustered unit vectors (float16 or float32 ``.npy``, in chunks, never whole in memory)
under ``--dir``, then runs the real command line on it in a child process:

    activeft select FILE -b B --minibatch M --iterations I --storage S --quiet

and samples the child's /proc/PID/status every 0.2 s: peak RSS (VmHWM), and the largest anonymous (RssAnon:
the process's own memory) and file-backed (RssFile: pages of the memory-mapped features file) parts. Each
configuration given with ``--run`` is measured in the same run of this script, one after the other.

    python bench/large_pool.py                                         # 10M float16 + 2M float32 vs float16
    python bench/large_pool.py --run 200000:float16 --run 200000:float32 --iterations 20 --out ''   # smoke
"""

import argparse
import datetime
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from selection_speed import machine, publish  # noqa: E402


def write_features(path, n, dim, dtype, clusters=1000, seed=0, chunk=200_000):
    """Clustered unit rows written straight into a memory-mapped .npy (no N×C array in memory)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32)
    sizes = rng.dirichlet(np.ones(clusters) * 2.0)
    spread = rng.uniform(0.5, 1.2, size=clusters).astype(np.float32)
    partial = path + ".partial"
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=(n, dim))
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        label = rng.choice(clusters, size=size, p=sizes)
        x = centers[label] + spread[label, None] * rng.standard_normal((size, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + size] = x.astype(dtype)
    out.flush()
    del out
    os.replace(partial, path)


def status_kib(pid):
    """VmHWM, RssAnon and RssFile of ``pid`` in KiB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return None

    def kib(name):
        return int(fields.get(name, "0 kB").split()[0])
    return kib("VmHWM"), kib("RssAnon"), kib("RssFile")


def sampled_run(command):
    """Run ``command`` (HF_HUB_OFFLINE=1), sampling its /proc status every 0.2 s; exits on failure.

    Returns ``{"seconds", "peak", "anon", "file", "out"}``: wall time, the largest VmHWM, RssAnon and RssFile in
    bytes, and its standard output.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = anon = filed = 0
    while child.poll() is None:
        sample = status_kib(child.pid)
        if sample:
            peak, anon, filed = max(peak, sample[0]), max(anon, sample[1]), max(filed, sample[2])
        time.sleep(0.2)
    out, err = child.communicate()
    elapsed = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{' '.join(command)[:300]} failed ({child.returncode}):\n{err[-3000:]}")
    return {"seconds": elapsed, "peak": peak * 1024, "anon": anon * 1024, "file": filed * 1024, "out": out}


def measure(path, args):
    command = [sys.executable, "-m", "activeft_label.cli", "select", path, "-b", str(args.budget),
               "--minibatch", str(args.minibatch), "--iters", str(args.iterations), "--storage",
               args.storage_now, "--quiet", "--out", os.path.join(args.dir, "large_pool_selection.csv")]
    found = sampled_run(command)
    return {"seconds": found["seconds"], "peak": found["peak"] / 1024**3, "anon": found["anon"] / 1024**3,
            "file": found["file"] / 1024**3, "said": found["out"].strip().splitlines()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", metavar="ROWS:STORAGE",
                        help="a pool size and storage to measure (repeatable); the file is float16 for float16 "
                             "storage, float32 otherwise. Default: 10000000:float16, 2000000:float32, "
                             "2000000:float16")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--minibatch", type=int, default=65536)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--dir", default=os.path.join(HERE, ".cache"))
    parser.add_argument("--keep", action="store_true", help="keep the features files (7.7 GB at 10M float16)")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="results file ('' = print only)")
    args = parser.parse_args()
    runs = args.run or ["10000000:float16", "2000000:float32", "2000000:float16"]
    os.makedirs(args.dir, exist_ok=True)
    rows = []
    for spec in runs:
        n, storage = spec.split(":")
        n = int(n)
        dtype = np.float16 if storage == "float16" else np.float32
        path = os.path.join(args.dir, f"large_pool_{n}x{args.dim}_{np.dtype(dtype).name}.npy")
        if not os.path.exists(path):
            t = time.perf_counter()
            write_features(path, n, args.dim, dtype)
            print(f"wrote {path} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        args.storage_now = storage
        found = measure(path, args)
        size = os.path.getsize(path) / 1024**3
        rows.append(f"| {n:,} × {args.dim} | {np.dtype(dtype).name} .npy ({size:.1f} GiB) | {storage} | "
                    f"{found['peak']:.2f} | {found['anon']:.2f} | {found['file']:.2f} | {found['seconds']:.0f} |")
        print(rows[-1], file=sys.stderr)
        for line in found["said"]:
            print("   ", line, file=sys.stderr)
        if not args.keep:
            os.remove(path)
    publish([
        f"## Pools larger than memory: `activeft select` peak memory ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB "
        f"memory. Command: `python bench/large_pool.py {' '.join(sys.argv[1:])}`.",
        f"Each row: `activeft select FILE -b {args.budget} --minibatch {args.minibatch} --iters "
        f"{args.iterations} --storage STORAGE` on clustered unit vectors (1,000 clusters), the features file "
        f"memory-mapped; memory sampled from /proc every 0.2 s. Peak = VmHWM (all resident pages); anonymous = "
        f"the process's own memory; file-backed = mapped files: the shared libraries (~0.3 GiB) and the pages of the features file not yet given back.",
        "",
        "| pool | file | storage | peak RSS GiB | anonymous GiB | file-backed GiB | wall s |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ], args.out)


if __name__ == "__main__":
    main()
