"""Ketenmonitor benchmarks: replay throughput, live latency, memory, recovery, hot-path profile.

    python -m bench run                          # everything, default sizes (see bench/RESULTS.md)
    python -m bench run --events 20000 --only replay,profile

Each run starts its own Kafka broker (deploy/kafka/kafka.sh), runs real `ketenmonitor worker`
processes against it, checks the worker's /metrics against an independent batch computation and
writes bench/results/<date>-<name>.json and bench/RESULTS.md. Timings live here, never in tests.
"""
