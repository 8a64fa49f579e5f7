"""Peak memory and time of an all-cached `embed_images` of N rows (issue #25: pools larger than memory).

Fills an embedding cache under ``--dir`` with N synthetic rows (``--rows``, default 2,000,000, of ``--dim`` 384
float32 values, stored as keyed rows: ``embed_images(keys=...)`` needs no image files for them, and with every row
cached the encoder is never loaded), then runs, in a child process,

    embed_images(["/nowhere/0.png", ...], keys=["bench row 0", ...], cache_dir=DIR)

and samples the child's /proc/PID/status every 0.2 s: peak RSS (VmHWM) and the largest anonymous (RssAnon: the
process's own memory) and file-backed (RssFile: mapped files, the memory-mapped result matrix among them) parts.
The child reports its own growth of VmHWM over the call (``/proc/self/clear_refs`` resets it first) and the call's
wall time.  The cache file (~1.65 KB a row at 384-d: 3.3 GB at 2M, 16.5 GB at 10M) is reused by later runs of the
same size unless removed (``--drop``).

    python bench/cache_memory.py                      # 2,000,000 × 384
    python bench/cache_memory.py --rows 10000000
    python bench/cache_memory.py --rows 100000 --out ''   # smoke
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from large_pool import sampled_run  # noqa: E402
from selection_speed import machine, publish  # noqa: E402

#: Rows stored per transaction while filling the cache.
FILL_ROWS = 50_000

CHILD = textwrap.dedent("""
    import json, sys, time

    def status(field):
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    rows, cache = int(sys.argv[1]), sys.argv[2]
    from activeft_label.embeddings import embed_images
    from activeft_label.embeddings.embed import MAPPED_RESULT_BYTES

    keys = [f"bench row {i}" for i in range(rows)]
    paths = [f"/nowhere/{i}.png" for i in range(rows)]
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")                   # VmHWM starts again from the RSS of now
        before = status("VmRSS")
    except OSError:
        before = status("VmHWM")
    started = time.perf_counter()
    result = embed_images(paths, keys=keys, cache_dir=cache, progress=False)
    seconds = time.perf_counter() - started
    features = result.features
    base = features
    while base is not None and not hasattr(base, "madvise"):   # an mmap.mmap at the end of the chain?
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    print(json.dumps({"seconds": seconds, "before": before, "growth": status("VmHWM") - before,
                      "anon_after": status("RssAnon"), "file_after": status("RssFile"),
                      "bytes": features.nbytes, "shape": list(features.shape), "cached": result.cached,
                      "mapped": base is not None, "threshold": MAPPED_RESULT_BYTES,
                      "check": float(features[::max(1, rows // 1000)].sum(dtype="float64"))}))
""")


def fill(cache, rows, dim, seed=0):
    """Store ``rows`` random (rows × dim) float32 rows as the default encoder's fp32 rows, keyed "bench row I".

    Returns the float64 sum of the rows the child samples (every ``rows // 1000``-th), to check what it reads.
    """
    from activeft_label.embeddings import DEFAULT_MODEL
    from activeft_label.embeddings.cache import open_cache
    from activeft_label.embeddings.names import resolve_model

    spec = resolve_model(DEFAULT_MODEL, None)
    handle = open_cache(cache, spec.name, spec.weights, "fp32")
    if handle is None:
        raise SystemExit(f"cannot open a cache in {cache}")
    rng = np.random.default_rng(seed)
    step = max(1, rows // 1000)
    check = 0.0
    try:
        for start in range(0, rows, FILL_ROWS):
            block = rng.standard_normal((min(FILL_ROWS, rows - start), dim), dtype=np.float32)
            first = (-start) % step                       # the rows of this block that the child's sample takes
            check += float(block[first::step].sum(dtype=np.float64))
            handle.store([(f"\0bench row {start + i}".encode(), 0, 0, block[i]) for i in range(len(block))])
    finally:
        handle.close()
    return check


def measure(cache, rows):
    found = sampled_run([sys.executable, "-c", CHILD, str(rows), cache])
    result = json.loads(found["out"].strip().splitlines()[-1])
    result.update(wall=found["seconds"], peak=found["peak"], anon=found["anon"], file=found["file"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--dir", default=os.path.join(HERE, ".cache"))
    parser.add_argument("--drop", action="store_true", help="remove the cache afterwards")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"), help="results file ('' = print only)")
    args = parser.parse_args()
    cache = os.path.join(args.dir, f"cache_memory_{args.rows}x{args.dim}")
    marker = os.path.join(cache, "filled.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            check = json.load(handle)["check"]
        fill_s = None
    else:
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        check = fill(cache, args.rows, args.dim)
        fill_s = time.perf_counter() - t
        with open(marker, "w") as handle:
            json.dump({"rows": args.rows, "dim": args.dim, "check": check}, handle)
        print(f"filled {cache} in {fill_s:.0f} s", file=sys.stderr)
    db = os.path.getsize(os.path.join(cache, "embeddings.sqlite3")) / 1024**3
    found = measure(cache, args.rows)
    if found["shape"] != [args.rows, args.dim] or found["cached"] != args.rows:
        raise SystemExit(f"unexpected result: {found}")
    if not np.isclose(found["check"], check, rtol=1e-6, atol=1e-3):
        raise SystemExit(f"the rows read differ from the rows stored: {found['check']} != {check}")
    gib = 1024**3
    matrix = found["bytes"] / gib
    row = (f"| {args.rows:,} × {args.dim} | {db:.1f} | {matrix:.2f} ({'mapped' if found['mapped'] else 'memory'}) "
           f"| {found['peak'] / gib:.2f} | {found['growth'] / gib:.2f} ({found['growth'] / found['bytes']:.2f}×) "
           f"| {found['anon'] / gib:.2f} | {found['file'] / gib:.2f} | {found['seconds']:.1f} "
           f"| {args.rows / found['seconds']:,.0f} |")
    print(row, file=sys.stderr)
    if args.drop:
        shutil.rmtree(cache, ignore_errors=True)
    publish([
        f"## All-cached `embed_images`: peak memory of the result ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}; {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / gib:.0f} GiB memory. "
        f"Command: `python bench/cache_memory.py {shlex.join(sys.argv[1:])}`.",
        f"Every row keyed and cached (random float32 rows stored under the default encoder's fp32 identity), so "
        f"the call only reads the SQLite cache into the result matrix (mapped from an unlinked temporary file "
        f"beside the cache above {found['threshold'] / gib:g} GiB). Peak = the child's VmHWM (torch and the "
        f"lists of N paths and keys included); growth = VmHWM over the call alone, and its ratio to the "
        f"matrix; anonymous / file-backed = the largest RssAnon / RssFile (file-backed: the shared libraries, "
        f"~0.3 GiB, and the mapped matrix's resident pages). Sampled from /proc every 0.2 s."
        + (f" Filling the cache took {fill_s:.0f} s." if fill_s is not None else ""),
        "",
        "| rows | cache GiB | matrix GiB | peak RSS GiB | growth GiB | anonymous GiB | file-backed GiB | "
        "call s | rows/s |",
        "|---|---|---|---|---|---|---|---|---|",
        row,
    ], args.out)


if __name__ == "__main__":
    main()
