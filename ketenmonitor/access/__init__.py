"""Who may do what on Kafka: the ACL plan generated from the chain definition (plan.py), applied
to a broker with kafka-python (kafka_acls.py), and the `ketenmonitor acl` command (commands.py).
See docs/security.md."""
