# Open WebUI stand-in routes (port 8080); the real image's health check is
# `curl --silent --fail http://localhost:8080/health`, which the curl shim serves.
VERSION=${WEBUI_STANDIN_VERSION:-0.6.5}
route() {
  case "$METHOD $REQ_PATH" in
    'GET /health') json '{"status":true}' ;;
    'GET /health/db') json '{"status":true}' ;;
    'GET /api/version') json "{\"version\":\"$VERSION\"}" ;;
    'GET /'|'HEAD /') send '200 OK' 'text/html; charset=utf-8' '<!doctype html><title>Open WebUI</title><p>Open WebUI stand-in</p>' ;;
    *) json '{"detail":"Not Found"}' '404 Not Found' ;;
  esac
}
