#!/bin/sh
# The entrypoint of docker-compose.secure.yml's postgres: PostgreSQL reads its TLS key only when the
# key belongs to the server's user and nobody else may read it, which a bind-mounted file cannot
# promise; so the mounted key is installed that way first, then the image's own entrypoint runs
# with the arguments given (the server and its -c ssl settings).
set -eu
install -o postgres -g postgres -m 600 /etc/tickpipe/secure/certs/server.key /var/lib/postgresql/server.key
exec docker-entrypoint.sh "$@"
