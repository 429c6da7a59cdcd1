"""Cold and warm build time, wall clock including process start, for the demo (host-cpu) and the
tower-crane (rk3588: INT8 + .rknn when the toolkit is set up) specs; a `validate` of the same spec
in the same run is the baseline (process start + spec loading).

    python bench/build_time.py     # prints the table, writes bench/results/build_time.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [("specs/demo-site.yaml", "host-cpu"), ("specs/tower-crane-site.yaml", "rk3588")]


def timed(args, env):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "build.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SITEWARDEN_CACHE=str(Path(tmp) / "cache"))
        subprocess.run([sys.executable, "build.py", "keys", "new", "--out", str(Path(tmp) / "keys")], cwd=ROOT, check=True,
                       capture_output=True)
        key = str(Path(tmp) / "keys" / "signing.key.pem")
        for spec, board in CASES:
            base = timed(["validate", "-q", spec], env)
            out = str(Path(tmp) / "out")
            cold = timed(["--board", board, spec, "-o", out, "--key", key], env)
            warm = timed(["--board", board, spec, "-o", out, "--key", key], env)
            rows.append({"spec": spec, "board": board, "validate_s": round(base, 2), "cold_s": round(cold, 2),
                         "warm_s": round(warm, 2), "warm_over_validate": round(warm / base, 2)})
    print(f"{'spec':<30}{'board':<10}{'validate':>10}{'cold build':>12}{'warm build':>12}{'warm/validate':>15}")
    for r in rows:
        print(f"{r['spec']:<30}{r['board']:<10}{r['validate_s']:>9.2f}s{r['cold_s']:>11.2f}s{r['warm_s']:>11.2f}s{r['warm_over_validate']:>15.2f}")
    (ROOT / "bench" / "results" / "build_time.json").write_text(json.dumps(
        {"rows": rows, "load_average": os.getloadavg(), "note": "wall clock incl. process start; cold = empty quantization/rknn cache"},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
