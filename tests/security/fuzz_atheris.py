"""A longer, coverage-guided run of the property tests' targets with atheris (optional):

    pip install atheris
    python -m tests.security.fuzz_atheris json  -atheris_runs=2000000 tests/security/corpus
    python -m tests.security.fuzz_atheris proto -atheris_runs=2000000 tests/security/corpus
    python -m tests.security.fuzz_atheris h2    -atheris_runs=2000000 tests/security/corpus

Any exception other than the clean ones the targets expect is a finding: atheris stops and
writes the input as ``crash-*``. Add it to ``corpus/`` and to a test once fixed.
"""

from __future__ import annotations

import asyncio
import sys

from tests.security import test_fuzz


def _h2(data: bytes) -> None:
    asyncio.run(test_fuzz.feed([test_fuzz.f.PREFACE + data]))


TARGETS = {"json": test_fuzz.check_json, "proto": test_fuzz.check_proto, "h2": _h2}


def main() -> None:
    import atheris  # optional: not a dependency of the suite

    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
