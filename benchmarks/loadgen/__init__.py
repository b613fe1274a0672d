"""Load generation for the serving benchmarks: pre-built payloads driven by wrk and h2load."""
