#!/bin/sh
# Seed the model list (kept under /root/.ollama like real Ollama, so a volume keeps it).
STORE=${OLLAMA_MODELS:-/root/.ollama/models}
mkdir -p "$STORE"
if [ ! -e "$STORE/standin-models" ]; then
  for model in ${OLLAMA_STANDIN_MODELS-llama3.2:1b}; do
    echo "$model 1321098329"
  done > "$STORE/standin-models"
fi
