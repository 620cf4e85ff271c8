"""The AI stack as Podman quadlet units: render from templates + config, apply, control."""
