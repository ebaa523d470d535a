#!/bin/sh
# Formats the KRaft storage on first start, then runs the broker with its properties file, used as it
# is: deploy/kafka/server.properties (the single node of docker-compose.yml), or the file named by
# TICKPIPE_KAFKA_CONFIG (a node of docker-compose.cluster.yml, deploy/kafka/cluster/node-N.properties).
set -eu
config=${TICKPIPE_KAFKA_CONFIG:-/etc/tickpipe/kafka/server.properties}
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    # A single controller is a dynamic quorum of itself (--standalone); a cluster's static
    # controller.quorum.voters is formatted without it. Every node uses the same cluster id.
    standalone=--standalone
    if grep -q '^controller.quorum.voters=' "$config"; then
        standalone=
    fi
    # shellcheck disable=SC2086 # $standalone is one word or none
    /opt/kafka/bin/kafka-storage.sh format $standalone \
        --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" --config "$config"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
