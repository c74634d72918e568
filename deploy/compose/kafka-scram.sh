#!/bin/sh
# Entrypoint of the `kafka` service in docker-compose.yml (image apache/kafka:4.x): a single KRaft
# node in secure mode, the same model as `KAFKA_SECURITY=scram deploy/kafka/kafka.sh start`
# (docs/security.md):
#   - client listeners SASL_PLAINTEXT with SCRAM-SHA-512: INTERNAL kafka:19092 for the services,
#     EXTERNAL :9092 advertised as $KAFKA_ADVERTISED_HOST:9092 for partners on other hosts;
#   - StandardAuthorizer, allow.everyone.if.no.acl.found=false, super user admin;
#   - the controller listener uses SASL PLAIN with a login generated at every start (only this
#     JVM uses it), because the controller cannot authenticate itself with SCRAM;
#   - the SCRAM users are written into the metadata log at the first format, from
#     KAFKA_SCRAM_CREDENTIALS ("name=password" pairs separated by whitespace; must include admin).
# ACLs are created afterwards by the `kafka-init` service (`ketenmonitor acl apply`).
set -eu

KAFKA_HOME=/opt/kafka
LOG_DIR=/var/lib/kafka/data
CONFIG=/tmp/server.properties
ADMIN_CONFIG=/tmp/admin.properties   # for the health check
: "${KAFKA_SCRAM_CREDENTIALS:?KAFKA_SCRAM_CREDENTIALS must name the users and passwords}"
: "${KAFKA_ADVERTISED_HOST:?KAFKA_ADVERTISED_HOST must name the host partners connect to}"
# A loopback address would send every partner on another host to itself.
case "$KAFKA_ADVERTISED_HOST" in
    localhost|127.*|::1|*[!A-Za-z0-9.:-]*)
        echo "kafka-scram.sh: KAFKA_ADVERTISED_HOST='$KAFKA_ADVERTISED_HOST' is not an address partners can reach" >&2
        exit 2 ;;
esac

admin_password=""
scram_args=""
for pair in $KAFKA_SCRAM_CREDENTIALS; do
    name=${pair%%=*}
    password=${pair#*=}
    # The storage tool's --add-scram syntax and the JAAS line take these characters unquoted.
    case "$name$password" in
        *[!A-Za-z0-9._~+/-]*) echo "kafka-scram.sh: bad characters in the entry of '$name'" >&2; exit 2 ;;
    esac
    [ "${#password}" -ge 12 ] || { echo "kafka-scram.sh: the password of '$name' is shorter than 12" >&2; exit 2; }
    [ "$name" = admin ] && admin_password=$password
    scram_args="$scram_args --add-scram SCRAM-SHA-512=[name=$name,password=$password]"
done
[ -n "$admin_password" ] || { echo "kafka-scram.sh: no password for admin" >&2; exit 2; }
controller_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

umask 077
cat >"$CONFIG" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=INTERNAL://:19092,EXTERNAL://:9092,CONTROLLER://:9093
advertised.listeners=INTERNAL://kafka:19092,EXTERNAL://$KAFKA_ADVERTISED_HOST:9092
listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="kraft-controller" password="$controller_password" user_kraft-controller="$controller_password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:kraft-controller
log.dirs=$LOG_DIR
num.partitions=6
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
cat >"$ADMIN_CONFIG" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
EOF

if [ ! -f "$LOG_DIR/meta.properties" ]; then
    # shellcheck disable=SC2086  # scram_args is a word list
    "$KAFKA_HOME/bin/kafka-storage.sh" format -t "$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)" \
        -c "$CONFIG" $scram_args >/dev/null
    echo "kafka-scram.sh: storage formatted with SCRAM users"
fi
exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$CONFIG"
