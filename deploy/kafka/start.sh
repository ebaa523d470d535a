#!/bin/sh
# Formats the KRaft storage on first start, then runs the broker with its properties file, used as it
# is: deploy/kafka/server.properties (the single node of docker-compose.yml), or the file named by
# TICKPIPE_KAFKA_CONFIG (a node of docker-compose.cluster.yml, deploy/kafka/cluster/node-N.properties,
# or the SASL_SSL node of docker-compose.secure.yml, deploy/kafka/secure.properties).
#
# With TICKPIPE_KAFKA_SCRAM_USER and TICKPIPE_KAFKA_SCRAM_PASSWORD set, the format also writes that
# SCRAM-SHA-512 user into the metadata log (the password may not contain ',', ']' or '"'), so a
# SASL listener accepts it from the first start on.
set -eu
config=${TICKPIPE_KAFKA_CONFIG:-/etc/tickpipe/kafka/server.properties}
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    # A single controller is a dynamic quorum of itself (--standalone); a cluster's static
    # controller.quorum.voters is formatted without it. Every node uses the same cluster id.
    standalone=--standalone
    if grep -q '^controller.quorum.voters=' "$config"; then
        standalone=
    fi
    set -- --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" --config "$config"
    if [ -n "${TICKPIPE_KAFKA_SCRAM_USER:-}" ]; then
        set -- "$@" --add-scram \
            "SCRAM-SHA-512=[name=$TICKPIPE_KAFKA_SCRAM_USER,password=${TICKPIPE_KAFKA_SCRAM_PASSWORD:?is needed with TICKPIPE_KAFKA_SCRAM_USER}]"
    fi
    # shellcheck disable=SC2086 # $standalone is one word or none
    /opt/kafka/bin/kafka-storage.sh format $standalone "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
