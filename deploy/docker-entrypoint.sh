#!/bin/sh
# The image's entrypoint: the first argument selects the role.
set -eu
role="${1:-producer}"
[ "$#" -gt 0 ] && shift
case "$role" in
    producer) exec hopline-producer "$@" ;;
    consumer) exec hopline-consumer "$@" ;;
    cli | hopline) exec hopline "$@" ;;
    *)
        echo "hopline image: unknown role '$role'; use producer, consumer or cli" >&2
        exit 64
        ;;
esac
