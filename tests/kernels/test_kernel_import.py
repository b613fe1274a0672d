import subprocess
import sys

# A fresh interpreter: other tests in this process have already compiled the kernels.
_PROBE = """
import importlib, numba
modules = ["summary", "histogram", "divergence", "ks", "kolmogorov", "chi2"]
compiled = []
for name in modules:
    module = importlib.import_module("kernels." + name)
    for attr, value in vars(module).items():
        if isinstance(value, numba.core.registry.CPUDispatcher) and value.signatures:
            compiled.append(name + "." + attr)
print(compiled)
"""


def test_importing_kernels_compiles_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
