"""Real-versus-generated image detectors. Nothing is exported yet."""
