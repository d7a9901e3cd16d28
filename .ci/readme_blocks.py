"""Run README.md's ```python blocks as written, top to bottom, in one namespace, in an empty
temporary folder (they write files). Fails on the first block that raises, naming it.

Usage: python .ci/readme_blocks.py [README.md]
"""

import os
import re
import sys
import tempfile
import time
import traceback


def blocks(text):
    """(line number, code) of each ```python block."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return out


def main(path):
    path = os.path.abspath(path)
    with open(path) as fh:
        found = blocks(fh.read())
    if not found:
        print(f"no ```python blocks in {path}")
        return 1
    namespace = {"__name__": "__readme__"}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for i, (line, code) in enumerate(found, 1):
            t0 = time.perf_counter()
            try:
                exec(compile(code, f"{os.path.basename(path)}:{line}", "exec"), namespace)
            except Exception:
                traceback.print_exc()
                print(f"README block {i} (line {line}) failed as written.")
                return 1
            print(f"block {i} (line {line}): ok, {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"all {len(found)} README python blocks ran")
    return 0


if __name__ == "__main__":  # Dask's worker processes import this file again
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
