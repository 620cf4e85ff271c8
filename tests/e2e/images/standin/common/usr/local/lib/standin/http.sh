#!/bin/sh
# One HTTP/1.1 request per connection; nc -e hands us the socket as stdin/stdout.
# Parses the request, applies the fault switches, then calls route() from routes.sh.
CR=$(printf '\r')
FAULT_DIR=/run/fault

log() { echo "standin ${STANDIN_SERVICE}: $*" >&2; }

# send STATUS CONTENT-TYPE BODY
send() {
  printf 'HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
    "$1" "$2" "${#3}"
  [ "$METHOD" = HEAD ] || printf '%s' "$3"
  log "$METHOD $REQ_PATH -> ${1%% *}"
}
json() { send "${2:-200 OK}" application/json "$1"; }             # json BODY [STATUS]
text() { send "${2:-200 OK}" 'text/plain; charset=utf-8' "$1"; }  # text BODY [STATUS]
not_found() { text '404 page not found' '404 Not Found'; }

# Newline-delimited JSON, chunked, like Ollama's streaming endpoints.
stream_start() {
  printf 'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
  log "$METHOD $REQ_PATH -> 200 (stream)"
}
stream_line() { printf '%x\r\n%s\n\r\n' "$((${#1} + 1))" "$1"; }
stream_end() { printf '0\r\n\r\n'; }

# json_field NAME: a string field of the request body (flat JSON is all we need).
json_field() {
  printf '%s' "$BODY" | sed -nE "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"([^\"]*)\".*/\\1/p"
}

IFS=' ' read -r METHOD TARGET PROTO || exit 0
PROTO=${PROTO%"$CR"}
REQ_PATH=${TARGET%%\?*}
LEN=0
AUTHORIZATION=
while IFS= read -r header; do
  header=${header%"$CR"}
  [ -z "$header" ] && break
  case $header in
    [Cc]ontent-[Ll]ength:*) LEN=${header#*:}; LEN=${LEN# } ;;
    [Aa]uthorization:*) AUTHORIZATION=${header#*:}; AUTHORIZATION=${AUTHORIZATION# } ;;
  esac
done
BODY=
[ "$LEN" -gt 0 ] 2>/dev/null && BODY=$(head -c "$LEN")

if [ -e "$FAULT_DIR/hang" ]; then
  log "$METHOD $REQ_PATH -> fault hang"
  while :; do sleep 3600; done
fi
if [ -e "$FAULT_DIR/500" ]; then
  json '{"error":"injected fault: 500"}' '500 Internal Server Error'
  exit 0
fi

. /usr/local/lib/standin/routes.sh
route
