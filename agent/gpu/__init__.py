"""GPU health: collectors (NVML, nvidia-smi, AMD sysfs), XID events, health rules, metrics.

One concern per module. Everything that touches hardware or the kernel runs in a worker
thread called by the GPU watcher; everything else (health, metrics, Ollama's view) is pure
and reads samples, so it is tested without a GPU.
"""
