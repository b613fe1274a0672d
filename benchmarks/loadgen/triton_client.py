"""A closed-loop load generator built on ``tritonclient`` (asyncio clients), for comparison.

``c`` coroutines each send the same 1-row request in a loop, as a user's script would, for
``warmup + duration`` seconds; prints one JSON line: answers, errors and latency percentiles
inside the window, and this process's CPU seconds in it.

    python -m benchmarks.loadgen.triton_client http 127.0.0.1:8000 mlp 64 10 2
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import numpy as np

WIDTH = 256


async def main(
    protocol: str, url: str, model: str, conc: int, duration: float, warmup: float
) -> None:
    if protocol == "http":
        import tritonclient.http.aio as client_lib
    else:
        import tritonclient.grpc.aio as client_lib
    x = np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32)
    client: Any = (
        client_lib.InferenceServerClient(url, conn_limit=conc)
        if protocol == "http"
        else client_lib.InferenceServerClient(url)
    )
    tensor = client_lib.InferInput("input", [1, WIDTH], "FP32")
    if protocol == "http":
        tensor.set_data_from_numpy(x, binary_data=False)  # V2 JSON, as wrk's body
    else:
        tensor.set_data_from_numpy(x)
    start = time.monotonic()
    measure, end = start + warmup, start + warmup + duration
    latencies: list[float] = []
    errors = 0
    cpu: list[float] = []

    async def loop() -> None:
        nonlocal errors
        while (now := time.monotonic()) < end:
            try:
                await client.infer(model, [tensor])
                done = time.monotonic()
                if done >= measure and done < end:
                    latencies.append(done - now)
            except Exception:  # any failure is one error, as wrk counts them
                errors += 1

    async def clock() -> None:
        await asyncio.sleep(warmup)
        cpu.append(time.process_time())
        await asyncio.sleep(duration)
        cpu.append(time.process_time())

    await asyncio.gather(clock(), *(loop() for _ in range(conc)))
    await client.close()
    lat = np.asarray(latencies) * 1000
    p50, p90, p99 = np.percentile(lat, [50, 90, 99]).tolist() if lat.size else (0.0, 0.0, 0.0)
    print(json.dumps({
        "requests": len(latencies), "errors": errors, "duration_s": duration,
        "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "cpu_s": cpu[1] - cpu[0],
    }))  # fmt: skip


if __name__ == "__main__":
    protocol, url, model, conc, duration, warmup = sys.argv[1:7]
    asyncio.run(main(protocol, url, model, int(conc), float(duration), float(warmup)))
