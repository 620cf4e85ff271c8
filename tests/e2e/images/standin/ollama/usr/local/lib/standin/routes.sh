# Ollama stand-in routes (port 11434). Models live in $OLLAMA_MODELS/standin-models as
# "name size" lines; every listed model also shows as loaded in /api/ps.
STORE=${OLLAMA_MODELS:-/root/.ollama/models}
MODELS=$STORE/standin-models
VERSION=${OLLAMA_STANDIN_VERSION:-0.6.8}

digest() { printf '%s' "$1" | sha256sum | cut -c1-64; }

# models_json tags|ps: the "models" array of /api/tags or /api/ps.
models_json() {
  sep=
  printf '['
  while read -r name size; do
    [ -n "$name" ] || continue
    d=$(digest "$name")
    details='"details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"}'
    if [ "$1" = ps ]; then
      vram=$size
      [ "${OLLAMA_STANDIN_GPU:-1}" = 1 ] || vram=0
      printf '%s{"name":"%s","model":"%s","size":%s,"digest":"%s",%s,"expires_at":"2099-01-01T00:00:00Z","size_vram":%s}' \
        "$sep" "$name" "$name" "$size" "$d" "$details" "$vram"
    else
      printf '%s{"name":"%s","model":"%s","modified_at":"2025-01-01T00:00:00Z","size":%s,"digest":"%s",%s}' \
        "$sep" "$name" "$name" "$size" "$d" "$details"
    fi
    sep=,
  done < "$MODELS"
  printf ']'
}

has_model() { grep -q "^$1 " "$MODELS"; }

pull() {
  model=$(json_field model)
  [ -n "$model" ] || model=$(json_field name)
  [ -n "$model" ] || { json '{"error":"model is required"}' '400 Bad Request'; return; }
  case $model in *:*) ;; *) model=$model:latest ;; esac
  stream=true
  printf '%s' "$BODY" | grep -q '"stream"[[:space:]]*:[[:space:]]*false' && stream=false
  case $model in
    *notfound*|*does-not-exist*)
      if [ $stream = true ]; then
        stream_start
        stream_line '{"status":"pulling manifest"}'
        stream_line '{"error":"pull model manifest: file does not exist"}'
        stream_end
      else
        json '{"error":"pull model manifest: file does not exist"}' '500 Internal Server Error'
      fi
      return ;;
  esac
  total=1321098329
  d=$(digest "$model")
  if [ $stream = true ]; then
    stream_start
    stream_line '{"status":"pulling manifest"}'
    for done_bytes in 0 440366109 880732219 $total; do
      stream_line "{\"status\":\"pulling ${d%"${d#????????????}"}\",\"digest\":\"sha256:$d\",\"total\":$total,\"completed\":$done_bytes}"
      sleep 0.1
    done
    stream_line '{"status":"verifying sha256 digest"}'
    stream_line '{"status":"writing manifest"}'
  fi
  has_model "$model" || echo "$model $total" >> "$MODELS"
  if [ $stream = true ]; then
    stream_line '{"status":"success"}'
    stream_end
  else
    json '{"status":"success"}'
  fi
}

delete() {
  model=$(json_field model)
  [ -n "$model" ] || model=$(json_field name)
  case $model in *:*) ;; *) model=$model:latest ;; esac
  if [ -n "$model" ] && has_model "$model"; then
    grep -v "^$model " "$MODELS" > "$MODELS.new"
    mv "$MODELS.new" "$MODELS"
    send '200 OK' application/json ''
  else
    json "{\"error\":\"model '$model' not found\"}" '404 Not Found'
  fi
}

# /api/chat and /api/generate: a fixed answer, in Ollama's shapes (streamed NDJSON by
# default, one object with "stream": false), so the real LiteLLM and Open WebUI can talk
# to the stand-in. REPLY is what every completion says.
REPLY=${OLLAMA_STANDIN_REPLY:-Hello from the Ollama stand-in.}
NOW=2025-01-01T00:00:00Z
COUNTS='"total_duration":1000000,"load_duration":1000,"prompt_eval_count":8,"prompt_eval_duration":1000,"eval_count":7,"eval_duration":1000'

complete() {  # complete chat|generate
  model=$(json_field model)
  [ -n "$model" ] || { json '{"error":"model is required"}' '400 Bad Request'; return; }
  case $model in *:*) ;; *) model=$model:latest ;; esac
  has_model "$model" || {
    json "{\"error\":\"model \\\"$model\\\" not found, try pulling it first\"}" '404 Not Found'
    return
  }
  if [ "$1" = chat ]; then
    part() { printf '"message":{"role":"assistant","content":"%s"}' "$1"; }
  else
    part() { printf '"response":"%s"' "$1"; }
  fi
  head="{\"model\":\"$model\",\"created_at\":\"$NOW\""
  if printf '%s' "$BODY" | grep -q '"stream"[[:space:]]*:[[:space:]]*false'; then
    json "$head,$(part "$REPLY"),\"done\":true,\"done_reason\":\"stop\",$COUNTS}"
    return
  fi
  stream_start
  for word in $REPLY; do
    stream_line "$head,$(part "$word "),\"done\":false}"
  done
  stream_line "$head,$(part ''),\"done\":true,\"done_reason\":\"stop\",$COUNTS}"
  stream_end
}

show() {  # model details, as LiteLLM and Open WebUI ask for them
  model=$(json_field model)
  [ -n "$model" ] || model=$(json_field name)
  case $model in *:*) ;; *) model=$model:latest ;; esac
  has_model "$model" || { json "{\"error\":\"model '$model' not found\"}" '404 Not Found'; return; }
  json '{"modelfile":"","parameters":"","template":"{{ .Prompt }}","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"},"model_info":{"general.architecture":"llama","llama.context_length":131072},"capabilities":["completion"]}'
}

route() {
  case "$METHOD $REQ_PATH" in
    'GET /'|'HEAD /') text 'Ollama is running' ;;
    'GET /api/version') json "{\"version\":\"$VERSION\"}" ;;
    'GET /api/tags') json "{\"models\":$(models_json tags)}" ;;
    'GET /api/ps') json "{\"models\":$(models_json ps)}" ;;
    'POST /api/pull') pull ;;
    'POST /api/chat') complete chat ;;
    'POST /api/generate') complete generate ;;
    'POST /api/show') show ;;
    'DELETE /api/delete') delete ;;
    *) not_found ;;
  esac
}
