"""Alerting: Prometheus rules and Alertmanager routes generated from the chain definition.

    ketenmonitor rules generate --output deploy/prometheus/rules/ketenmonitor.rules.yml
    ketenmonitor rules alertmanager --output deploy/alertmanager/alertmanager.yml

Norm limits and targets come from the chain definition (chain.yaml); the other thresholds (how
long a feed may be quiet, the dead-letter ratio, ...) from the alerting policy (policy.yaml).
"""
