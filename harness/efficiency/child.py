"""Child process entry point: ``python -m harness.efficiency.child SPEC.json OUT.json``.

Writes ``{"record": ...}`` on success, or ``{"error": "<one line>"}`` and exit code 1 on a BenchError (a usage
or model problem the parent reports as that model's failure). Progress goes to stdout, one line per event.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from harness.errors import BenchError, one_line


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m harness.efficiency.child SPEC.json OUT.json", file=sys.stderr)
        return 2
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    warnings.filterwarnings("ignore", category=FutureWarning)
    from harness.efficiency.measure import measure
    from harness.efficiency.spec import MeasureSpec

    spec = MeasureSpec.from_dict(json.loads(spec_path.read_text(encoding="utf-8")))
    try:
        if spec.measure:  # `--device cuda:N`: current before anything is loaded or timed
            from harness.device import bind_cuda, resolve_device

            bind_cuda(resolve_device(spec.device))
        record = measure(spec, log=lambda line: print(line, flush=True))
    except BenchError as err:
        out_path.write_text(json.dumps({"error": one_line(err)}), encoding="utf-8")
        return 1
    out_path.write_text(json.dumps({"record": record}, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the parent's subprocess
    sys.exit(main(sys.argv[1:]))
