# LiteLLM stand-in routes (port 4000). Readiness reports the database: with DATABASE_URL
# set, it tries a TCP connection to its host:port (a real PostgreSQL on the network).
VERSION=${LITELLM_STANDIN_VERSION:-1.67.0}

db_state() {
  [ -n "${DATABASE_URL:-}" ] || { echo 'Not connected'; return; }
  hostport=${DATABASE_URL#*://}
  hostport=${hostport#*@}
  hostport=${hostport%%/*}
  host=${hostport%:*}
  port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=5432
  # busybox nc has no -z: connect, send nothing (stdin EOF), and let the server hang up.
  if timeout 3 nc -w 2 "$host" "$port" </dev/null >/dev/null 2>&1; then
    echo connected
  else
    echo disconnected
  fi
}

route() {
  case "$METHOD $REQ_PATH" in
    'GET /health/liveliness'|'GET /health/liveness') json "\"I'm alive!\"" ;;
    'GET /health/readiness')
      db=$(db_state)
      case $db in
        connected) status=connected; code='200 OK' ;;
        'Not connected') status=healthy; code='200 OK' ;;
        *) status=unhealthy; code='503 Service Unavailable' ;;
      esac
      json "{\"status\":\"$status\",\"db\":\"$db\",\"cache\":null,\"litellm_version\":\"$VERSION\",\"success_callbacks\":[]}" "$code" ;;
    'GET /v1/models'|'GET /models')
      # As the real proxy: with a master key, the API wants it (401 without, or wrong).
      if [ -n "${LITELLM_MASTER_KEY:-}" ] && [ "$AUTHORIZATION" != "Bearer $LITELLM_MASTER_KEY" ]; then
        json '{"error":{"message":"Authentication Error, invalid user key","type":"auth_error","code":"401"}}' '401 Unauthorized'
      else
        json '{"data":[],"object":"list"}'
      fi ;;
    'GET /'|'HEAD /') text 'LiteLLM stand-in' ;;
    *) json '{"error":{"message":"Not Found","type":"not_found","code":"404"}}' '404 Not Found' ;;
  esac
}
