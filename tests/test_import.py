"""``import kizzasi_lite`` needs numpy and array-api-compat alone, and starts no threads or sockets."""

import json
import subprocess
import sys

ALLOWED_THIRD_PARTY = {"numpy", "array_api_compat", "kizzasi_lite"}
FORBIDDEN_STDLIB = {"threading", "socket", "subprocess", "multiprocessing", "asyncio"}


def test_import_pulls_in_only_numpy_and_array_api_compat():
    code = (
        "import sys, json; import kizzasi_lite; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    top = set(json.loads(out.stdout))
    third_party = {m for m in top if m not in sys.stdlib_module_names and not m.startswith("_")}
    assert third_party <= ALLOWED_THIRD_PARTY, third_party - ALLOWED_THIRD_PARTY
    assert not (top & FORBIDDEN_STDLIB), top & FORBIDDEN_STDLIB
