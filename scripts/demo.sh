#!/usr/bin/env bash
# `make demo`: migrate, then serve the demo project under uvicorn (ASGI) until Ctrl-C.
# REDIS_URL unset: in-memory channel, jobs run in the web process. Set: Redis + a Celery worker.
# DEMO_HOST and DEMO_PORT choose the address to listen on (127.0.0.1, 8000).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
HOST=${DEMO_HOST:-127.0.0.1}
PORT=${DEMO_PORT:-8000}
export DJANGO_SETTINGS_MODULE=testproject.settings
# A development server: debug pages, and no warning that in-memory messages stay in-process.
export DJANGO_DEBUG=${DJANGO_DEBUG:-1}

"$BIN/python" manage.py migrate --no-input --verbosity 0

if [ -n "${REDIS_URL:-}" ]; then
    cat <<EOF

  broadcast_app demo, Redis mode: channel and Celery broker at $REDIS_URL
  Run, each in another terminal:
    REDIS_URL=$REDIS_URL $BIN/celery -A testproject worker --loglevel=INFO
    REDIS_URL=$REDIS_URL $BIN/python manage.py tail_topic chat

EOF
else
    cat <<EOF

  broadcast_app demo, in-memory mode: jobs run in a thread of this web process.
  To go through Redis with a Celery worker and a terminal, run instead:
    REDIS_URL=redis://localhost:6379/0 make demo
    REDIS_URL=redis://localhost:6379/0 $BIN/celery -A testproject worker --loglevel=INFO
  DEMO_PORT=8001 make demo listens on another port (DEMO_HOST: another address).

EOF
fi

# uvicorn (testproject/demo/management/commands/serve_demo.py); open streams end at Ctrl-C.
# It prints the address to open once it listens, or why it cannot.
exec "$BIN/python" manage.py serve_demo --host "$HOST" --port "$PORT"
